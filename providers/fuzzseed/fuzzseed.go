// Package fuzzseed writes seed files for go test -fuzz, so that tests can
// record real inputs (hostile requests, the mock's answers) as a committed
// seed corpus under their package's testdata/fuzz/.
package fuzzseed

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Write writes values as the seed file testdata/fuzz/target/name of the
// current package, in the format of go test -fuzz. The values must be of the
// types the fuzz target takes, in order: []byte, string, bool, int or uint64.
func Write(tb testing.TB, target, name string, values ...any) {
	tb.Helper()
	b := []byte("go test fuzz v1\n")
	for _, v := range values {
		switch v := v.(type) {
		case []byte:
			b = fmt.Appendf(b, "[]byte(%s)\n", strconv.Quote(string(v)))
		case string:
			b = fmt.Appendf(b, "string(%s)\n", strconv.Quote(v))
		case bool:
			b = fmt.Appendf(b, "bool(%t)\n", v)
		case int:
			b = fmt.Appendf(b, "int(%d)\n", v)
		case uint64:
			b = fmt.Appendf(b, "uint64(%d)\n", v)
		default:
			tb.Fatalf("a seed value of type %T", v)
		}
	}
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		tb.Fatal(err)
	}
}

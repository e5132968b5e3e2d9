package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCPUProfileIsWrittenWhenStopped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	stop, err := startCPUProfile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1e6; i++ { // something to sample
		_ = strings.Repeat("x", i%7)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A pprof profile is gzipped protobuf.
	if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		t.Fatalf("the profile is not gzipped: % x", b[:min(len(b), 8)])
	}
}

func TestCPUProfileInAMissingDirectoryIsRefusedAtStart(t *testing.T) {
	var stderr bytes.Buffer
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "cpu.pprof")
	code := run([]string{"-listen", "127.0.0.1:0", "-cpuprofile", path}, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "orchestrator: -cpuprofile: open "+path) {
		t.Fatalf("exit %d, stderr %q; want 2 and the flag named", code, stderr.String())
	}
}

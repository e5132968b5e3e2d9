package mock

import (
	"strconv"
	"sync"

	"github.com/llm-gateway/gateway/providers/jsonenc"
)

// Answers are written by appending to byte slices rather than through
// encoding/json: the shapes are fixed, and reflection would make the mock
// the bottleneck of the gateway's benchmark.

// appendString appends s as a JSON string literal (invalid UTF-8 becomes
// U+FFFD, as encoding/json does).
func appendString(dst []byte, s string) []byte { return jsonenc.AppendString(dst, s) }

// appendNullableString appends s as a JSON string, or null when s is empty.
func appendNullableString(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, "null"...)
	}
	return appendString(dst, s)
}

func appendInt(dst []byte, n int) []byte { return strconv.AppendInt(dst, int64(n), 10) }

// bufPool recycles the buffers answers are built in; fasthttp copies the
// body out of them, so they can go back at once.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 1<<20 {
		return // do not keep the odd huge answer alive
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

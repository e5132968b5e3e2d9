package mock

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkHandler measures the mock's own cost per request, without the
// network or a client, so its allocations are its own.
func BenchmarkHandler(b *testing.B) {
	cases := []struct {
		name, path, body string
		headers          []string
	}{
		{"openai", "/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"What is the capital of France? Answer in one word."}],"max_tokens":64}`,
			[]string{"Authorization", "Bearer sk"}},
		{"anthropic", "/v1/messages", `{"model":"claude-3-5-sonnet","max_tokens":64,"system":[{"type":"text","text":"You are terse."}],"messages":[{"role":"user","content":[{"type":"text","text":"What is the capital of France? Answer in one word."}]}]}`,
			[]string{"x-api-key", "k", "anthropic-version", "2023-06-01"}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s := New(Config{})
			h := s.Handler()
			var ctx fasthttp.RequestCtx
			var req fasthttp.Request
			b.ReportAllocs()
			for b.Loop() {
				req.Reset()
				req.SetRequestURI(c.path)
				req.Header.SetMethod(fasthttp.MethodPost)
				for i := 0; i+1 < len(c.headers); i += 2 {
					req.Header.Set(c.headers[i], c.headers[i+1])
				}
				req.SetBodyString(c.body)
				ctx.Init(&req, nil, nil)
				h(&ctx)
				if ctx.Response.StatusCode() != 200 {
					b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
			}
		})
	}
}

package pipeline_test

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/llm-gateway/gateway/mock"
	"github.com/llm-gateway/gateway/pipeline"
	"github.com/llm-gateway/gateway/pipeline/config"
)

// benchServer is the orchestrator on the embedded default, pointed at an
// in-process mock with no latency, journal to io.Discard or a buffer.
func benchServer(b *testing.B, log io.Writer) *pipeline.Server {
	b.Helper()
	m := mock.New(mock.Config{})
	addr, err := m.Start("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close() })
	yml := bytes.ReplaceAll(config.DefaultYAML(), []byte("http://127.0.0.1:8001"), []byte("http://"+addr))
	cfg, err := config.Parse(yml, func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	srv, err := pipeline.New(pipeline.Config{Settings: cfg.Pipeline, Providers: cfg.Providers, Log: log})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Journal().Close() })
	return srv
}

func benchRequest(body string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI("/v1/chat/completions")
	req.Header.SetContentType("application/json")
	req.SetBodyString(body)
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
	return &ctx
}

// BenchmarkHandlerReject is the whole reject path in-process: decode,
// validate, the request machine's received → failed, two journal lines and
// the error answer. The target is under 10 µs of CPU.
func BenchmarkHandlerReject(b *testing.B) {
	srv := benchServer(b, io.Discard)
	h := srv.Handler()
	body := `{"model":"gpt-4","messages":[{"role":"robot","content":"Hello"}],"temperature":0.7}`
	ctx := benchRequest(body)
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset() // fasthttp reuses a RequestCtx the same way
		h(ctx)
		if ctx.Response.StatusCode() != 400 {
			b.Fatalf("status %d", ctx.Response.StatusCode())
		}
	}
}

// BenchmarkHandlerProxied is one successful call through the whole gateway
// in-process, the mock answering over loopback: the gateway's cost plus one
// loopback round trip and the mock's handler.
func BenchmarkHandlerProxied(b *testing.B) {
	srv := benchServer(b, io.Discard)
	h := srv.Handler()
	body := `{"model":"gpt-4","messages":[{"role":"user","content":"Hello"}],"temperature":0.7}`
	ctx := benchRequest(body)
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		h(ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

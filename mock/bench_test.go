package mock_test

import (
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llm-gateway/gateway/mock"
)

// The benchmarks drive the mock over loopback with latency 0, as the
// gateway's benchmark does, and report requests per second.

const (
	benchOpenAI       = `{"model":"gpt-4o","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"What is the capital of France? Answer in one word."}],"temperature":0.2,"max_tokens":64}`
	benchOpenAIStream = `{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"What is the capital of France? Answer in one word."}]}`
	benchAnthropic    = `{"model":"claude-3-5-sonnet","max_tokens":64,"system":[{"type":"text","text":"You are terse."}],"messages":[{"role":"user","content":[{"type":"text","text":"What is the capital of France? Answer in one word."}]}],"temperature":0.2}`
	benchAnthropicSSE = `{"model":"claude-3-5-sonnet","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"What is the capital of France? Answer in one word."}]}`
)

func BenchmarkOpenAIChat(b *testing.B) {
	b.Run("whole", func(b *testing.B) { benchLoopback(b, "/v1/chat/completions", benchOpenAI, oaHeaders) })
	b.Run("stream", func(b *testing.B) { benchLoopback(b, "/v1/chat/completions", benchOpenAIStream, oaHeaders) })
}

func BenchmarkAnthropicMessages(b *testing.B) {
	b.Run("whole", func(b *testing.B) { benchLoopback(b, "/v1/messages", benchAnthropic, anHeaders) })
	b.Run("stream", func(b *testing.B) { benchLoopback(b, "/v1/messages", benchAnthropicSSE, anHeaders) })
}

func benchLoopback(b *testing.B, path, body string, headers []string) {
	_, base := startMock(b, mock.Config{})
	// A plain dialer and a short idle time: fasthttp's default dialer and
	// idle-connection cleaner leave goroutines that goleak would report.
	hc := &fasthttp.HostClient{
		Addr:                base[len("http://"):],
		MaxConns:            512,
		MaxIdleConnDuration: 100 * time.Millisecond,
		Dial:                func(addr string) (net.Conn, error) { return net.Dial("tcp", addr) },
	}
	b.Cleanup(hc.CloseIdleConnections)
	url := base + path
	b.ReportAllocs()
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(res)
		for pb.Next() {
			req.Reset()
			req.SetRequestURI(url)
			req.Header.SetMethod(fasthttp.MethodPost)
			for i := 0; i+1 < len(headers); i += 2 {
				req.Header.Set(headers[i], headers[i+1])
			}
			req.SetBodyString(body)
			if err := hc.Do(req, res); err != nil {
				b.Fatal(err)
			}
			if res.StatusCode() != fasthttp.StatusOK {
				b.Fatalf("status %d: %s", res.StatusCode(), res.Body())
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

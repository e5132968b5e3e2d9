package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/llm-gateway/gateway/mock"
	"github.com/llm-gateway/gateway/providers"
)

// Fuzz targets for what a client controls: the request body (the Decoder),
// the whole handler (any method, path, headers and body, against providers
// that fail in every way the engine knows), and the raw bytes of a connection
// (fasthttp's parser, the error handler and the handler together). None may
// panic, and every answer must be valid JSON with a documented status (or an
// SSE stream that ends properly). The seed corpora are in
// testdata/fuzz/<target>/; docs/reliability.md has the long runs.
//
//	go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime 10m ./pipeline/
//	go test -run '^$' -fuzz '^FuzzHandler$' -fuzztime 10m ./pipeline/
//	go test -run '^$' -fuzz '^FuzzServeConn$' -fuzztime 10m ./pipeline/

// fuzzDecoder is built once: a validator is costly to build.
var fuzzDecoder = NewDecoder(2048)

func FuzzDecode(f *testing.F) {
	for _, s := range []struct{ ct, body string }{
		{"application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"Hello"}],"temperature":0.7}`},
		{"application/json; charset=utf-8", `{"model":"gpt-4","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:,"}}]}]}`},
		{"application/vnd.api+json", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"r"}]}`},
		{"application/json", `{"model":"gpt-4","messages":[{"role":"robot","content":"x"}]}`},
		{"application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"max_tokens":99999999999999999999,"temperature":1e400}`},
		{"application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"logprobs":false,"top_logprobs":3,"stop":["a","b","c","d","e"],"logit_bias":{"1":-101}}`},
		{"application/json", `{"model":"gpt-4","messages":[{"role":"user","content":[]}],"n":0,"top_p":2}`},
		{"application/json", "{\"model\":\"gpt-4\",\"messages\":[{\"role\":\"user\",\"content\":\"caf\xe9\"}]}"},
		{"application/json", `[[[[[[[[[[]]]]]]]]]]`},
		{"text/plain", `{}`},
		{"", ``},
		{"application/json", `  {"model":"gpt-4","messages":null}  `},
	} {
		f.Add(s.ct, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		in := bytes.Clone(body)
		req, ae := fuzzDecoder.Decode([]byte(ct), body)
		if !bytes.Equal(in, body) {
			t.Fatal("Decode changed its input")
		}
		if ae != nil {
			switch ae.Status {
			case 400, 413, 415:
			default:
				t.Fatalf("status %d for a bad request", ae.Status)
			}
			if ae.Type != typeInvalidRequest || ae.Message == "" {
				t.Fatalf("error %+v", ae)
			}
			var ctx fasthttp.RequestCtx
			writeError(&ctx, "req_x", ae, 0, 0)
			if err := fuzzCheckAnswer(&ctx.Response, true); err != nil {
				t.Fatal(err)
			}
			return
		}
		// Accepted: the request is what validation promises the engine.
		if req == nil || req.Model == "" || len(req.Model) > 256 || len(req.Messages) == 0 || len(req.Messages) > 2048 {
			t.Fatalf("accepted %+v", req)
		}
		if !utf8.Valid(body) || !json.Valid(body) || !bytes.Equal(req.Raw, bytes.TrimSpace(body)) {
			t.Fatalf("accepted a body that is not valid UTF-8 JSON, or kept another Raw: %q", body)
		}
		for i, m := range req.Messages {
			switch m.Role {
			case "developer", "system", "user", "assistant", "tool":
			default:
				t.Fatalf("messages[%d].role %q accepted", i, m.Role)
			}
			if m.Content.Kind == providers.ContentAbsent && m.Role != "assistant" {
				t.Fatalf("messages[%d] without content accepted", i)
			}
		}
		if req.StreamOptions != nil && !req.Stream {
			t.Fatal("stream_options accepted without stream")
		}
		_ = contentChars(req)
		if _, err := json.Marshal(req); err != nil {
			t.Fatalf("an accepted request does not marshal: %v", err)
		}
	})
}

// fuzzStatuses are the statuses the gateway documents (DESIGN §5, plus a
// provider's own 422, which DESIGN §4 passes back like its 400, 404 and
// 413); auth is off in the fuzz server, and a 500 means a handler panicked:
// a bug.
var fuzzStatuses = map[int]bool{200: true, 400: true, 404: true, 405: true, 408: true, 413: true, 415: true, 422: true, 429: true, 431: true, 502: true, 503: true, 504: true}

// fuzzCheckAnswer checks one answer: a documented status, and a body that is
// valid UTF-8 JSON (the OpenAI error shape for an error), or an SSE stream
// that ends in [DONE] or an error event.
func fuzzCheckAnswer(resp *fasthttp.Response, chat bool) error {
	status := resp.StatusCode()
	if !fuzzStatuses[status] {
		return fmt.Errorf("status %d: %.300s", status, resp.Body())
	}
	ct := string(resp.Header.ContentType())
	body := resp.Body()
	switch {
	case strings.HasPrefix(ct, "text/event-stream"):
		if status != 200 {
			return fmt.Errorf("a stream with status %d", status)
		}
		return fuzzCheckSSE(body)
	case strings.HasPrefix(ct, "text/plain"): // /metrics
		if chat || status != 200 {
			return fmt.Errorf("%d %s: %.300s", status, ct, body)
		}
		return nil
	case !strings.HasPrefix(ct, "application/json"):
		return fmt.Errorf("status %d with content type %q: %.300s", status, ct, body)
	}
	if !utf8.Valid(body) {
		return fmt.Errorf("the answer is not valid UTF-8: %q", body)
	}
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("the answer is not a JSON object: %v: %q", err, body)
	}
	if status >= 400 && chat || v["error"] != nil {
		e, ok := v["error"].(map[string]any)
		if !ok {
			return fmt.Errorf("%d without an error object: %q", status, body)
		}
		for _, k := range []string{"message", "type", "param", "code"} {
			if _, ok := e[k]; !ok {
				return fmt.Errorf("error object without %s: %q", k, body)
			}
		}
		if _, ok := v["request_id"].(string); !ok {
			return fmt.Errorf("an error without request_id: %q", body)
		}
		if (status == 429 || status == 503) && chat && len(resp.Header.Peek("Retry-After")) == 0 {
			return fmt.Errorf("%d without Retry-After", status)
		}
		return nil
	}
	if chat {
		// The OpenAI adapter accepts a completion without "object" (it
		// checks "choices"), and the answer keeps the provider's body.
		if _, ok := v["choices"].([]any); status != 200 || !ok || (v["object"] != nil && v["object"] != "chat.completion") {
			return fmt.Errorf("%d: not a chat.completion: %q", status, body)
		}
		for _, k := range []string{"request_id", "content", "provider"} {
			if _, ok := v[k].(string); !ok {
				return fmt.Errorf("a completion without %s: %q", k, body)
			}
		}
	}
	return nil
}

// fuzzCheckSSE checks an OpenAI event stream: data events of JSON, the last
// one [DONE] or an error payload, nothing after it.
func fuzzCheckSSE(body []byte) error {
	if !utf8.Valid(body) {
		return fmt.Errorf("the stream is not valid UTF-8: %q", body)
	}
	ended := false
	for _, ev := range strings.Split(string(body), "\n\n") {
		ev = strings.TrimSpace(ev)
		if ev == "" || strings.HasPrefix(ev, ":") {
			continue
		}
		if ended {
			return fmt.Errorf("an event after the end: %q", body)
		}
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok || strings.Contains(data, "\n") {
			return fmt.Errorf("not one data line: %q", ev)
		}
		if data == "[DONE]" {
			ended = true
			continue
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(data), &v); err != nil {
			return fmt.Errorf("an event that is not a JSON object: %q", data)
		}
		if _, ok := v["error"]; ok {
			ended = true
		}
	}
	if !ended {
		return fmt.Errorf("the stream did not end with [DONE] or an error event: %q", body)
	}
	return nil
}

// fuzzScript decides what the fuzz providers do: 4 bits per call of a
// request, in order (the 17th call and later succeed).
var fuzzScript atomic.Uint64

// fuzzUpstream, when set, is the body of a 200 that the real OpenAI adapter
// reads (from a loopback server) for the openai provider's successes: what
// the adapter accepts, the pipeline must answer well.
var fuzzUpstream atomic.Pointer[[]byte]

// fuzzProvider answers at once, as the script says; an openai success
// with fuzzUpstream set goes through the real adapter.
type fuzzProvider struct {
	name  string
	real  providers.Provider
	mu    sync.Mutex
	calls map[string]int // by request ID
}

var _ providers.Prefiller = (*fuzzProvider)(nil)

// SupportsPrefill lets the anthropic side continue cut streams.
func (p *fuzzProvider) SupportsPrefill() bool { return p.name == "anthropic" }

func (p *fuzzProvider) Name() string { return p.name }

// step returns the script's outcome for this call of the request.
func (p *fuzzProvider) step(call providers.Call) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.calls) > 10000 {
		clear(p.calls)
	}
	n := p.calls[call.RequestID]
	p.calls[call.RequestID] = n + 1
	if n >= 16 {
		return 0
	}
	return fuzzScript.Load() >> (4 * n) & 0xf
}

func (p *fuzzProvider) fail(class providers.Class, status int) *providers.Error {
	e := &providers.Error{Class: class, Provider: p.name, Status: status, Message: "fuzz " + string(class)}
	if class == providers.ClassRateLimited {
		e.RetryAfter = time.Millisecond
	}
	return e
}

// outcome maps a script step to an error (nil: success).
func (p *fuzzProvider) outcome(s uint64) *providers.Error {
	switch s {
	case 1:
		return p.fail(providers.ClassServer, 500)
	case 2:
		return p.fail(providers.ClassRateLimited, 429)
	case 3:
		return p.fail(providers.ClassTimeout, 0)
	case 4:
		return p.fail(providers.ClassConnect, 0)
	case 5:
		return p.fail(providers.ClassOverloaded, 529)
	case 6:
		return p.fail(providers.ClassMalformed, 200)
	case 7:
		return p.fail(providers.ClassAuth, 401)
	case 8:
		return p.fail(providers.ClassInvalid, 400)
	case 9:
		return p.fail(providers.ClassInvalid, 422)
	}
	return nil
}

func (p *fuzzProvider) Complete(ctx context.Context, req *providers.ChatRequest, call providers.Call) (*providers.ChatResponse, error) {
	if err := p.outcome(p.step(call)); err != nil {
		return nil, err
	}
	if fuzzUpstream.Load() != nil && p.name == "openai" {
		return p.real.Complete(ctx, req, call)
	}
	text := "fuzz reply to: " + req.Messages[len(req.Messages)-1].Content.PlainText()
	return &providers.ChatResponse{ID: "chatcmpl-fuzz", Object: "chat.completion", Created: 1, Model: call.Model,
		Choices: []providers.Choice{{Message: providers.AnswerMessage{Role: "assistant", Content: &text}, FinishReason: "stop"}}}, nil
}

func (p *fuzzProvider) Stream(ctx context.Context, req *providers.ChatRequest, call providers.Call) (providers.Stream, error) {
	s := p.step(call)
	if err := p.outcome(s); err != nil {
		return nil, err
	}
	st := &fuzzStream{p: p, model: call.Model, failAt: -1}
	switch s {
	case 10: // cut after two chunks
		st.failAt, st.err = 2, p.fail(providers.ClassServer, 0)
	case 11: // an error event after one chunk
		st.failAt, st.err = 1, p.fail(providers.ClassOverloaded, 0)
	case 12: // ends before its first chunk
		st.failAt, st.err = 0, io.EOF
	case 13: // stalls after three chunks
		st.failAt, st.err = 3, p.fail(providers.ClassTimeout, 0)
	}
	return st, nil
}

// fuzzStream yields a role chunk, three words, a finish chunk and a usage
// chunk, or fails at failAt.
type fuzzStream struct {
	p      *fuzzProvider
	model  string
	i      int
	failAt int
	err    error
}

func (s *fuzzStream) Next(ctx context.Context, idle time.Duration) (*providers.Chunk, error) {
	if ctx.Err() != nil {
		return nil, s.p.fail(providers.ClassCanceled, 0)
	}
	if s.i == s.failAt {
		s.i = 100
		return nil, s.err
	}
	c := &providers.Chunk{ID: "chatcmpl-fuzz", Object: "chat.completion.chunk", Created: 1, Model: s.model,
		Choices: []providers.ChunkChoice{{}}}
	words := []string{"one ", "two ", "three"}
	switch i := s.i; {
	case i == 0:
		c.Choices[0].Delta.Role = "assistant"
	case i <= len(words):
		c.Choices[0].Delta.Content = &words[i-1]
	case i == len(words)+1:
		stop := "stop"
		c.Choices[0].FinishReason = &stop
	case i == len(words)+2:
		c.Choices = []providers.ChunkChoice{}
		c.Usage = &providers.Usage{PromptTokens: 1, CompletionTokens: 3, TotalTokens: 4}
	default:
		return nil, io.EOF
	}
	s.i++
	return c, nil
}

func (s *fuzzStream) Close() error { return nil }

// fuzzProviders are the providers of the fuzz servers built so far.
var fuzzProviders []*fuzzProvider

// fuzzBegin sets up one input: the providers' script and body, and call
// counts that start again (a client may reuse its X-Request-ID across
// inputs).
func fuzzBegin(script uint64, upstream []byte) {
	fuzzScript.Store(script)
	if len(upstream) > 0 {
		fuzzUpstream.Store(&upstream)
	} else {
		fuzzUpstream.Store(nil)
	}
	for _, p := range fuzzProviders {
		p.mu.Lock()
		clear(p.calls)
		p.mu.Unlock()
	}
}

// lockedLog is a journal's output that a test reads while the journal
// writes: the fuzz server's (reset after each input), the engine harness's.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	l.b.Reset()
	return s
}

// newFuzzServer builds a gateway whose two providers are fuzzProviders, with
// timings that keep each input short, and shuts it down at cleanup.
func newFuzzServer(f *testing.F) (*Server, *lockedLog) {
	log := &lockedLog{}
	upstream := startFuzzUpstream(f)
	target := func(p, m string) providers.Target { return providers.Target{Provider: p, Model: m} }
	ps := providers.Settings{
		Providers: map[string]providers.ProviderSettings{
			"openai":    {Kind: providers.KindOpenAI, BaseURL: upstream, APIKey: "sk-fuzz"},
			"anthropic": {Kind: providers.KindAnthropic, BaseURL: "http://127.0.0.1:9", APIKey: "sk-fuzz"},
		},
		Breaker: providers.BreakerSettings{FailureThreshold: 3, OpenTimeout: 5 * time.Millisecond},
		Routes: providers.Routes{
			"gpt-4":             {target("openai", "gpt-4"), target("anthropic", "claude")},
			"claude-3-5-sonnet": {target("anthropic", "claude"), target("openai", "gpt-4o")},
			"solo":              {target("openai", "gpt-4")},
		},
	}
	var settings Settings
	settings.Server.MaxMessages = 64
	settings.Server.MaxBodyBytes = 64 << 10
	settings.Server.MaxContentChars = 10_000
	settings.Policy.AttemptTimeout = time.Second
	settings.Policy.Deadline = 2 * time.Second
	settings.Policy.Backoff = Backoff{Base: time.Millisecond, Max: 2 * time.Millisecond, Factor: 2}
	settings.Policy.StreamContinuation = true
	srv, err := New(Config{Settings: settings, Providers: ps, Log: log,
		WrapProvider: func(p providers.Provider) providers.Provider {
			fp := &fuzzProvider{name: p.Name(), real: p, calls: map[string]int{}}
			fuzzProviders = append(fuzzProviders, fp)
			return fp
		}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		for _, p := range fuzzProviders {
			if c, ok := p.real.(interface{ Close() error }); ok {
				_ = c.Close()
			}
		}
	})
	return srv, log
}

// startFuzzUpstream serves fuzzUpstream as a 200 application/json answer to
// every request, on loopback; it returns its URL.
func startFuzzUpstream(f *testing.F) string {
	return mock.RawUpstream(f, func(_ context.Context, c net.Conn) {
		r := bufio.NewReader(c)
		for {
			var req fasthttp.Request
			if err := req.Read(r); err != nil {
				return
			}
			var body []byte
			if up := fuzzUpstream.Load(); up != nil {
				body = *up
			}
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
				return
			}
		}
	})
}

// fuzzCheckJournal fails on a recovered panic, and replays what the input
// logged: every journey legal and finished.
func fuzzCheckJournal(t *testing.T, srv *Server, log *lockedLog) {
	t.Helper()
	srv.Journal().Flush()
	out := log.take()
	if strings.Contains(out, "action=panic") {
		t.Fatalf("the handler panicked:\n%s", out)
	}
	rep, err := Replay(strings.NewReader(out), ReplayOptions{AllowIncomplete: true})
	if err == nil {
		err = rep.Err()
	}
	if err != nil || rep.Requests.Unfinished != 0 || rep.Requests.Partial != 0 {
		t.Fatalf("the journal does not replay: %v %+v\n%s", err, rep.Requests, out)
	}
}

func FuzzHandler(f *testing.F) {
	const ok = `{"model":"gpt-4","messages":[{"role":"user","content":"Hello"}]}`
	const stream = `{"model":"gpt-4","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello"}]}`
	upstream := []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"extra":{"kept":true}}`)
	for _, s := range []struct {
		method, uri, ct, id string
		body                string
		up                  []byte
		script              uint64
	}{
		{"POST", "/v1/chat/completions", "application/json", "", ok, nil, 0},
		{"POST", "/v1/chat/completions", "application/json", "trace-1", ok, upstream, 0},
		{"POST", "/v1/chat/completions", "application/json", "", ok, []byte(`{"choices":[]}`), 0x1},
		{"POST", "/v1/chat/completions", "application/json", "", ok, nil, 0x111},    // retried, then fails over
		{"POST", "/v1/chat/completions", "application/json", "", ok, nil, 0x22},     // every target rate limited: one more round
		{"POST", "/v1/chat/completions", "application/json", "", ok, nil, 0x8},      // invalid: 400 from the provider
		{"POST", "/v1/chat/completions", "application/json", "", ok, nil, 0x76543},  // a mix
		{"POST", "/v1/chat/completions", "application/json", "", stream, nil, 0},    // a clean stream
		{"POST", "/v1/chat/completions", "application/json", "", stream, nil, 0xa},  // cut, continued on anthropic
		{"POST", "/v1/chat/completions", "application/json", "", stream, nil, 0xba}, // cut, and the continuation fails
		{"POST", "/v1/chat/completions", "application/json", "", stream, nil, 0xc1}, // no first chunk, then a retry
		{"POST", "/v1/chat/completions", "application/json", "", stream, nil, 0xd},  // stalls
		{"POST", "/v1/chat/completions", "application/json", "", strings.Replace(stream, "gpt-4", "solo", 1), nil, 0xa},
		{"POST", "/v1/chat/completions", "text/plain", "", ok, nil, 0},
		{"GET", "/v1/chat/completions", "", "", "", nil, 0},
		{"POST", "/v1/chat/completions", "application/json", "", `{"model":"nope","messages":[{"role":"user","content":"x"}]}`, nil, 0},
		{"GET", "/v1/models", "", "", "", nil, 0},
		{"GET", "/healthz", "", "", "", nil, 0},
		{"GET", "/readyz", "", "", "", nil, 0},
		{"GET", "/admin/breakers", "", "", "", nil, 0},
		{"GET", "/metrics", "", "", "", nil, 0},
		{"DELETE", "/nope?x=1#y", "", "", "", nil, 0},
	} {
		f.Add(s.method, s.uri, s.ct, s.id, []byte(s.body), s.up, s.script)
	}
	srv, log := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, method, uri, ct, id string, body, up []byte, script uint64) {
		fuzzBegin(script, up)
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(method)
		ctx.Request.SetRequestURI(uri)
		if ct != "" {
			ctx.Request.Header.SetContentType(ct)
		}
		if id != "" {
			ctx.Request.Header.Set("X-Request-ID", id)
		}
		ctx.Request.SetBody(body)
		srv.Handler()(&ctx)
		chat := string(ctx.Path()) == "/v1/chat/completions"
		if err := fuzzCheckAnswer(&ctx.Response, chat); err != nil {
			t.Fatal(err)
		}
		if chat && ctx.IsPost() {
			got := ctx.Response.Header.Peek("X-Request-ID")
			if !validRequestID(got) {
				t.Fatalf("X-Request-ID %q", got)
			}
		}
		fuzzCheckJournal(t, srv, log)
	})
}

// fuzzConn is a connection whose client sent in and then closed its side;
// what the server writes is kept.
type fuzzConn struct {
	r   *bytes.Reader
	out bytes.Buffer
}

func (c *fuzzConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c *fuzzConn) Close() error                { return nil }
func (c *fuzzConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080} }
func (c *fuzzConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *fuzzConn) SetDeadline(t time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(t time.Time) error { return nil }

func FuzzServeConn(f *testing.F) {
	post := func(body string, headers ...string) string {
		return "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n" +
			strings.Join(append(headers, ""), "\r\n") + fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body)
	}
	const ok = `{"model":"gpt-4","messages":[{"role":"user","content":"Hello"}]}`
	for _, s := range []struct {
		raw    string
		script uint64
	}{
		{post(ok), 0},
		{post(ok) + post(ok) + "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n", 0x1},
		{post(`{"model":"gpt-4","stream":true,"messages":[{"role":"user","content":"Hello"}]}`), 0xa},
		{"HEAD /v1/models HTTP/1.1\r\nHost: gw\r\n\r\n" + post(ok), 0},
		{"GET /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n\r\n", 0},
		{post(`{"model":`), 0},
		{"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"mod\r\n0\r\n\r\n", 0},
		{"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{", 0},
		{"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 99999999999\r\n\r\n", 0},
		{"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", 0},
		{"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-Bad: a\x01b\r\n\r\n", 0},
		{"GET / HTTP/1.0\r\n\r\n", 0},
		{"HELLO\r\n\r\n", 0},
		{"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}GET /healthz HTTP/1.1\r\n\r\n", 0},
	} {
		f.Add([]byte(s.raw), s.script)
	}
	srv, log := newFuzzServer(f)
	// The methods of the requests the handler saw, in order: a HEAD answer
	// has no body, which the reader of the answers must know.
	var methods []string
	srv.http.Handler = func(ctx *fasthttp.RequestCtx) {
		methods = append(methods, string(ctx.Method()))
		srv.handle(ctx)
	}
	f.Fuzz(func(t *testing.T, raw []byte, script uint64) {
		fuzzBegin(script, nil)
		methods = methods[:0]
		c := &fuzzConn{r: bytes.NewReader(raw)}
		done := make(chan error, 1)
		go func() { done <- srv.http.ServeConn(c) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("ServeConn did not return on %q", raw)
		}
		// Read back every answer: one per request the handler saw, and at
		// most one more from the error handler, which closes the
		// connection.
		r := bufio.NewReader(bytes.NewReader(c.out.Bytes()))
		for i := 0; ; i++ {
			if _, err := r.Peek(1); err == io.EOF {
				if i < len(methods) {
					t.Fatalf("%d answers for %d requests: %q", i, len(methods), c.out.Bytes())
				}
				break
			}
			if i > len(methods) {
				t.Fatalf("more answers than requests (%v): %q", methods, c.out.Bytes())
			}
			var resp fasthttp.Response
			resp.SkipBody = i < len(methods) && methods[i] == "HEAD"
			if err := resp.Read(r); err != nil {
				t.Fatalf("answer %d does not parse: %v: %q", i, err, c.out.Bytes())
			}
			if resp.SkipBody {
				if !fuzzStatuses[resp.StatusCode()] {
					t.Fatalf("answer %d to HEAD: status %d", i, resp.StatusCode())
				}
				continue
			}
			// Which path an answer is for is not known here; a chat
			// answer carries an X-Request-ID (but for transport errors).
			chat := len(resp.Header.Peek("X-Request-ID")) > 0
			if err := fuzzCheckAnswer(&resp, chat); err != nil {
				t.Fatalf("answer %d: %v\ninput %q", i, err, raw)
			}
		}
		fuzzCheckJournal(t, srv, log)
	})
}

package providers

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/llm-gateway/gateway/mock"
)

// TestMain checks that no test of the package leaves a goroutine behind.
// Three fasthttp goroutines are exempt, all sleeping in time.Sleep where
// nothing can wake them: the client's idle-connection cleaner (stops once its
// pool is empty, after up to MaxIdleConnDuration), the server worker pool's
// cleaner of the mock and test servers (stops after up to 10s once the server
// is shut down) and the server's process-wide Date header clock.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	)
}

// The keys of the tests; every error is checked not to contain them.
const (
	testOpenAIKey    = "sk-test-OPENAI-secret-key-0123456789"
	testAnthropicKey = "sk-ant-test-ANTHROPIC-secret-key-9876543210"
)

// startMock runs the mock provider on a loopback port for one test.
func startMock(t testing.TB, cfg mock.Config) (*mock.Server, string) {
	t.Helper()
	if cfg.OpenAIKey == "" {
		cfg.OpenAIKey = testOpenAIKey
	}
	if cfg.AnthropicKey == "" {
		cfg.AnthropicKey = testAnthropicKey
	}
	srv := mock.New(cfg)
	addr, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatalf("start mock: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	waitServing(t, addr)
	return srv, "http://" + addr
}

// waitServing makes one request to the mock's control API. mock.Server.Close
// hangs when it runs before the Serve goroutine has registered its listener
// (fasthttp's Shutdown then closes nothing); once a request was answered, it
// has.
func waitServing(t testing.TB, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("mock not reachable: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /mock/stats HTTP/1.1\r\nHost: mock\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatalf("mock not reachable: %v", err)
	}
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("mock not answering: %v", err)
	}
}

func testSettings(kind, base string) ProviderSettings {
	s := ProviderSettings{Kind: kind, BaseURL: base, APIKey: testOpenAIKey}
	if kind == KindAnthropic {
		s.APIKey = testAnthropicKey
	}
	return s
}

// newProvider builds an adapter of kind against base, closed at cleanup.
func newProvider(t testing.TB, kind, base string, edit ...func(*ProviderSettings)) Provider {
	t.Helper()
	s := testSettings(kind, base)
	for _, e := range edit {
		e(&s)
	}
	p, err := New(kind, s)
	if err != nil {
		t.Fatalf("New(%s): %v", kind, err)
	}
	t.Cleanup(func() { _ = p.(interface{ Close() error }).Close() })
	return p
}

// checkError asserts err is a *Error of class want from provider, and that
// neither its text nor anything it wraps mentions an API key.
func checkError(t testing.TB, err error, want Class) *Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want class %s", want)
	}
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("got %T %v, want a *Error", err, err)
	}
	if pe.Class != want {
		t.Fatalf("got class %s (%v), want %s", pe.Class, err, want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("errors.Is(err, %s) is false", want)
	}
	checkNoKey(t, err)
	return pe
}

func checkNoKey(t testing.TB, err error) {
	t.Helper()
	for e := err; e != nil; e = errors.Unwrap(e) {
		for _, key := range []string{testOpenAIKey, testAnthropicKey} {
			if strings.Contains(e.Error(), key) {
				t.Fatalf("error text contains an API key: %q", e.Error())
			}
		}
	}
	var pe *Error
	if errors.As(err, &pe) {
		for _, s := range []string{pe.Message, pe.Type, pe.Code, pe.Param} {
			for _, key := range []string{testOpenAIKey, testAnthropicKey} {
				if strings.Contains(s, key) {
					t.Fatalf("error field contains an API key: %q", s)
				}
			}
		}
	}
}

func userRequest(text string) *ChatRequest {
	return &ChatRequest{
		Model:    "public-model",
		Messages: []Message{{Role: "user", Content: Content{Kind: ContentString, Text: text}}},
	}
}

func ptr[T any](v T) *T { return &v }

// hostClientOf exposes the connection pool of an adapter for the tests.
func hostClientOf(p Provider) *upstream {
	switch p := p.(type) {
	case *OpenAI:
		return p.up
	case *Anthropic:
		return p.up
	}
	return nil
}

var kinds = []string{KindOpenAI, KindAnthropic}

func TestNewRejectsBadSettings(t *testing.T) {
	tests := []struct {
		name string
		s    ProviderSettings
	}{
		{"unknown kind", ProviderSettings{Kind: "gemini", BaseURL: "http://127.0.0.1:1"}},
		{"no base url", ProviderSettings{Kind: KindOpenAI}},
		{"no scheme", ProviderSettings{Kind: KindOpenAI, BaseURL: "127.0.0.1:8001"}},
		{"ftp scheme", ProviderSettings{Kind: KindAnthropic, BaseURL: "ftp://127.0.0.1:8001"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p, err := New("x", tt.s); err == nil {
				t.Fatalf("New accepted %+v: %T", tt.s, p)
			}
		})
	}
}

func TestNewAppliesDefaults(t *testing.T) {
	p, err := NewAnthropic("anthropic", ProviderSettings{Kind: KindAnthropic, BaseURL: "https://api.example.com/prefix/"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	hc := p.up.hc
	switch {
	case hc.MaxConns != DefaultMaxConns, hc.MaxConnWaitTimeout != DefaultMaxConnWait,
		hc.MaxIdleConnDuration != DefaultIdleConnTimeout, hc.MaxIdemponentCallAttempts != 1,
		hc.RetryIf != nil, hc.RetryIfErr != nil, hc.ReadTimeout != 0, !hc.IsTLS,
		hc.Addr != "api.example.com:443":
		t.Errorf("host client not configured as documented: %+v", hc)
	}
	if p.up.url != "https://api.example.com/prefix/v1/messages" {
		t.Errorf("url %q", p.up.url)
	}
	if v := string(p.up.heads[0].Peek("anthropic-version")); v != DefaultAnthropicVersion || p.settings.DefaultMaxTokens != DefaultMaxTokens {
		t.Errorf("version %q, max tokens %d", v, p.settings.DefaultMaxTokens)
	}
}

// The fault table of DESIGN §4, against the mock, for both providers.
func TestFaultsAreClassified(t *testing.T) {
	srv, base := startMock(t, mock.Config{})
	type want struct {
		class      Class
		status     int
		retryAfter time.Duration
	}
	tests := []struct {
		name    string
		rule    mock.Rule
		timeout time.Duration
		openai  want
		anthro  want
	}{
		{"timeout: slower than the attempt timeout", mock.Rule{Fault: mock.FaultTimeout, DelayMS: 3000}, 150 * time.Millisecond,
			want{class: ClassTimeout}, want{class: ClassTimeout}},
		{"rate limit with its Retry-After", mock.Rule{Fault: mock.FaultRateLimit, RetryAfterS: 7}, time.Second,
			want{ClassRateLimited, 429, 7 * time.Second}, want{ClassRateLimited, 429, 7 * time.Second}},
		{"server error 500", mock.Rule{Fault: mock.FaultServerError, Status: 500}, time.Second,
			want{class: ClassServer, status: 500}, want{class: ClassServer, status: 500}},
		{"server error 502", mock.Rule{Fault: mock.FaultServerError, Status: 502}, time.Second,
			want{class: ClassServer, status: 502}, want{class: ClassServer, status: 502}},
		{"server error 503", mock.Rule{Fault: mock.FaultServerError, Status: 503}, time.Second,
			want{class: ClassServer, status: 503}, want{class: ClassServer, status: 503}},
		{"server error 504", mock.Rule{Fault: mock.FaultServerError, Status: 504}, time.Second,
			want{class: ClassServer, status: 504}, want{class: ClassServer, status: 504}},
		{"server error 408 is a timeout", mock.Rule{Fault: mock.FaultServerError, Status: 408}, time.Second,
			want{class: ClassTimeout, status: 408}, want{class: ClassTimeout, status: 408}},
		{"server error 403 is auth", mock.Rule{Fault: mock.FaultServerError, Status: 403}, time.Second,
			want{class: ClassAuth, status: 403}, want{class: ClassAuth, status: 403}},
		{"server error 422 is invalid", mock.Rule{Fault: mock.FaultServerError, Status: 422}, time.Second,
			want{class: ClassInvalid, status: 422}, want{class: ClassInvalid, status: 422}},
		{"overloaded: Anthropic 529, OpenAI 503", mock.Rule{Fault: mock.FaultOverloaded}, time.Second,
			want{class: ClassServer, status: 503}, want{class: ClassOverloaded, status: 529}},
		{"malformed 2xx body", mock.Rule{Fault: mock.FaultMalformed}, time.Second,
			want{class: ClassMalformed, status: 200}, want{class: ClassMalformed, status: 200}},
		{"reset is connect", mock.Rule{Fault: mock.FaultReset}, time.Second,
			want{class: ClassConnect}, want{class: ClassConnect}},
		{"hang is a timeout", mock.Rule{Fault: mock.FaultHang}, 150 * time.Millisecond,
			want{class: ClassTimeout}, want{class: ClassTimeout}},
	}
	for _, kind := range kinds {
		p := newProvider(t, kind, base)
		for _, tt := range tests {
			t.Run(kind+"/"+tt.name, func(t *testing.T) {
				srv.Reset()
				w := tt.openai
				if kind == KindAnthropic {
					w = tt.anthro
				}
				rule := tt.rule
				rule.Provider, rule.Count = kind, 1
				if err := srv.AddFault(rule); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				resp, err := p.Complete(context.Background(), userRequest("hello"), Call{Model: "m", RequestID: "req_fault", Timeout: tt.timeout})
				if resp != nil {
					t.Fatalf("got an answer: %+v", resp)
				}
				pe := checkError(t, err, w.class)
				if pe.Status != w.status || pe.RetryAfter != w.retryAfter || pe.Provider != kind {
					t.Errorf("status %d retry-after %s provider %q, want %d %s %q", pe.Status, pe.RetryAfter, pe.Provider, w.status, w.retryAfter, kind)
				}
				if pe.Message == "" {
					t.Error("no message")
				}
				if elapsed := time.Since(start); elapsed > tt.timeout+time.Second {
					t.Errorf("took %s with an attempt timeout of %s", elapsed, tt.timeout)
				}
			})
		}
	}
}

func TestProviderErrorMessagesAreKept(t *testing.T) {
	_, base := startMock(t, mock.Config{})
	t.Run("openai 401 names no key", func(t *testing.T) {
		p := newProvider(t, KindOpenAI, base, func(s *ProviderSettings) { s.APIKey = testAnthropicKey })
		_, err := p.Complete(context.Background(), userRequest("hi"), Call{Model: "gpt-4o", Timeout: time.Second})
		pe := checkError(t, err, ClassAuth)
		if pe.Status != 401 || pe.Code != "invalid_api_key" || !strings.Contains(pe.Message, "Incorrect API key") {
			t.Errorf("got %+v", pe)
		}
	})
	t.Run("anthropic 401", func(t *testing.T) {
		p := newProvider(t, KindAnthropic, base, func(s *ProviderSettings) { s.APIKey = testOpenAIKey })
		_, err := p.Complete(context.Background(), userRequest("hi"), Call{Model: "claude", Timeout: time.Second})
		pe := checkError(t, err, ClassAuth)
		if pe.Status != 401 || pe.Type != "authentication_error" || pe.Message != "invalid x-api-key" {
			t.Errorf("got %+v", pe)
		}
	})
	t.Run("openai 400 keeps message and param", func(t *testing.T) {
		p := newProvider(t, KindOpenAI, base)
		req := userRequest("hi")
		req.Raw = []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":3}`)
		_, err := p.Complete(context.Background(), req, Call{Model: "gpt-4o", Timeout: time.Second})
		pe := checkError(t, err, ClassInvalid)
		if pe.Status != 400 || pe.Param != "temperature" || !strings.Contains(pe.Message, "temperature") || pe.Type != "invalid_request_error" {
			t.Errorf("got %+v", pe)
		}
	})
	t.Run("anthropic 400 keeps message", func(t *testing.T) {
		p := newProvider(t, KindAnthropic, base)
		req := userRequest("hi")
		req.Tools = []byte(`[{"type":"function","function":{"name":"bad name!","parameters":{"type":"object"}}}]`)
		_, err := p.Complete(context.Background(), req, Call{Model: "claude", Timeout: time.Second})
		pe := checkError(t, err, ClassInvalid)
		if pe.Status != 400 || !strings.Contains(pe.Message, "tools.0.name") {
			t.Errorf("got %+v", pe)
		}
	})
	for _, kind := range kinds {
		t.Run(kind+" 404 unknown model", func(t *testing.T) {
			p := newProvider(t, kind, base)
			_, err := p.Complete(context.Background(), userRequest("hi"), Call{Model: "unknown-model", Timeout: time.Second})
			pe := checkError(t, err, ClassInvalid)
			if pe.Status != 404 || !strings.Contains(pe.Message, "unknown-model") {
				t.Errorf("got %+v", pe)
			}
		})
	}
}

func TestConnectionRefusedIsConnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ln.Close()
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			p := newProvider(t, kind, base)
			_, err := p.Complete(context.Background(), userRequest("hi"), Call{Model: "m", Timeout: time.Second})
			pe := checkError(t, err, ClassConnect)
			// The message may reach the client: it says what happened, not where.
			if pe.Message != "could not reach the provider: connection refused" || pe.Err == nil {
				t.Errorf("got %q (%v)", pe.Message, pe.Err)
			}
			_, err = p.Stream(context.Background(), userRequest("hi"), Call{Model: "m", Timeout: time.Second})
			checkError(t, err, ClassConnect)
		})
	}
}

// A client that goes away must end the attempt in flight at once, whatever
// the attempt timeout, and leave no goroutine or connection behind.
func TestCancelAbortsTheAttemptPromptly(t *testing.T) {
	srv, base := startMock(t, mock.Config{})
	for _, kind := range kinds {
		for _, streamed := range []bool{false, true} {
			name := kind + "/complete"
			if streamed {
				name = kind + "/stream"
			}
			t.Run(name, func(t *testing.T) {
				p := newProvider(t, kind, base)
				srv.Reset()
				if err := srv.AddFault(mock.Rule{Provider: kind, Fault: mock.FaultHang, Count: 1}); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(50*time.Millisecond, cancel)
				start := time.Now()
				var err error
				if streamed {
					_, err = p.Stream(ctx, userRequest("hi"), Call{Model: "m"})
				} else {
					_, err = p.Complete(ctx, userRequest("hi"), Call{Model: "m"})
				}
				checkError(t, err, ClassCanceled)
				if elapsed := time.Since(start); elapsed > 500*time.Millisecond {
					t.Errorf("cancel took %s", elapsed)
				}
				if n := hostClientOf(p).hc.ConnsCount(); n != 0 {
					t.Errorf("%d connections left open after the cancel", n)
				}
			})
		}
	}
}

func TestContextDeadlineIsCanceledNotTimeout(t *testing.T) {
	srv, base := startMock(t, mock.Config{})
	p := newProvider(t, KindOpenAI, base)
	if err := srv.AddFault(mock.Rule{Fault: mock.FaultHang, Count: 1}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Millisecond)
	defer cancel()
	_, err := p.Complete(ctx, userRequest("hi"), Call{Model: "m", Timeout: 5 * time.Second})
	checkError(t, err, ClassCanceled)
}

func TestAlreadyCanceledContextMakesNoCall(t *testing.T) {
	srv, base := startMock(t, mock.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, kind := range kinds {
		p := newProvider(t, kind, base)
		_, err := p.Complete(ctx, userRequest("hi"), Call{Model: "m"})
		checkError(t, err, ClassCanceled)
		_, err = p.Stream(ctx, userRequest("hi"), Call{Model: "m"})
		checkError(t, err, ClassCanceled)
	}
	if n := srv.Stats().Requests(mock.ProviderOpenAI) + srv.Stats().Requests(mock.ProviderAnthropic); n != 0 {
		t.Errorf("the mock saw %d requests", n)
	}
}

// Calls that end cleanly give their connection back; calls that were cut
// close theirs, so the pool never holds a connection in an unknown state.
func TestConnectionsAreReusedOnlyAfterCleanCalls(t *testing.T) {
	srv, base := startMock(t, mock.Config{})
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			p := newProvider(t, kind, base)
			hc := hostClientOf(p).hc
			call := Call{Model: "m", Timeout: 2 * time.Second}
			for i := 0; i < 3; i++ {
				if _, err := p.Complete(context.Background(), userRequest("hi"), call); err != nil {
					t.Fatal(err)
				}
				s, err := p.Stream(context.Background(), userRequest("hi"), call)
				if err != nil {
					t.Fatal(err)
				}
				drain(t, s, time.Second)
				s.Close()
			}
			if n := hc.ConnsCount(); n != 1 {
				t.Errorf("%d connections after sequential clean calls, want 1", n)
			}
			// A stream closed half way closes its connection.
			s, err := p.Stream(context.Background(), userRequest("one two three four five six"), call)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Next(context.Background(), time.Second); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s.Close() // twice is fine
			if n := hc.ConnsCount(); n != 0 {
				t.Errorf("%d connections after an abandoned stream, want 0", n)
			}
			// And the next call works on a fresh one.
			srv.Reset()
			if _, err := p.Complete(context.Background(), userRequest("hi"), call); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestBusyPoolFailsAsConnectAfterMaxConnWait(t *testing.T) {
	srv, base := startMock(t, mock.Config{})
	p := newProvider(t, KindOpenAI, base, func(s *ProviderSettings) {
		s.MaxConns = 1
		s.MaxConnWait = 50 * time.Millisecond
	})
	if err := srv.AddFault(mock.Rule{Fault: mock.FaultHang, Count: 1}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := p.Complete(ctx, userRequest("hold the only connection"), Call{Model: "m"})
		checkError(t, err, ClassCanceled)
	}()
	defer func() { cancel(); wg.Wait() }()
	deadline := time.Now().Add(2 * time.Second)
	for hostClientOf(p).hc.ConnsCount() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	_, err := p.Complete(context.Background(), userRequest("hi"), Call{Model: "m", Timeout: 2 * time.Second})
	checkError(t, err, ClassConnect)
	if elapsed := time.Since(start); elapsed > 500*time.Millisecond {
		t.Errorf("waited %s for a free connection, MaxConnWait is 50ms", elapsed)
	}
}

func TestRequestIDIsSentUpstream(t *testing.T) {
	srv, base := startMock(t, mock.Config{})
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv.Reset()
			p := newProvider(t, kind, base)
			if _, err := p.Complete(context.Background(), userRequest("hi"), Call{Model: "target-model", RequestID: "req_complete_" + kind}); err != nil {
				t.Fatal(err)
			}
			s, err := p.Stream(context.Background(), userRequest("hi"), Call{Model: "target-model", RequestID: "req_stream_" + kind})
			if err != nil {
				t.Fatal(err)
			}
			drain(t, s, time.Second)
			s.Close()
			log := srv.Log()
			if len(log) != 2 {
				t.Fatalf("mock log has %d entries: %+v", len(log), log)
			}
			for i, want := range []struct {
				id     string
				stream bool
			}{{"req_complete_" + kind, false}, {"req_stream_" + kind, true}} {
				e := log[i]
				if e.RequestID != want.id || e.Stream != want.stream || e.Model != "target-model" || e.Provider != kind || e.Outcome != mock.OutcomeOK {
					t.Errorf("log[%d] = %+v, want request id %s stream %v model target-model", i, e, want.id, want.stream)
				}
			}
		})
	}
}

// drain reads a stream to its end and returns its chunks; any error other
// than io.EOF fails the test.
func drain(t testing.TB, s Stream, idle time.Duration) []*Chunk {
	t.Helper()
	var out []*Chunk
	for {
		c, err := s.Next(context.Background(), idle)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("after %d chunks: %v", len(out), err)
		}
		out = append(out, c)
	}
}

// streamText joins the content of chunks and returns the last finish reason.
func streamText(chunks []*Chunk) (text, finish string) {
	var b strings.Builder
	for _, c := range chunks {
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil {
				b.WriteString(*ch.Delta.Content)
			}
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
	}
	return b.String(), finish
}

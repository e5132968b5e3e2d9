package pipeline_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"

	"github.com/llm-gateway/gateway/mock"
	"github.com/llm-gateway/gateway/pipeline"
	"github.com/llm-gateway/gateway/pipeline/config"
	"github.com/llm-gateway/gateway/providers"
)

func TestOperatorEndpointsAnswer(t *testing.T) {
	g := startGateway(t, nil)
	for _, tc := range []struct {
		path        string
		status      int
		contentType string
		contains    []string
	}{
		{"/healthz", 200, "application/json", []string{`"status":"ok"`}},
		{"/readyz", 200, "application/json", []string{`"status":"ready"`}},
		{"/v1/models", 200, "application/json", []string{`"object":"list"`, `"id":"gpt-4"`, `"id":"claude-3-5-sonnet"`}},
		{"/v1/models/claude-3-5-sonnet", 200, "application/json", []string{`{"id":"claude-3-5-sonnet","object":"model","created":0,"owned_by":"llm-gateway"}`}},
		{"/v1/models/gpt-5", 404, "application/json", []string{`"code":"model_not_found"`, `"param":"model"`}},
		{"/admin/breakers", 200, "application/json", []string{`"provider":"anthropic"`, `"provider":"openai"`, `"state":"closed"`}},
		{"/metrics", 200, "text/plain", []string{"# TYPE gateway_requests_total counter", "gateway_breaker_state{provider=\"openai\"} 0", "go_goroutines"}},
	} {
		t.Run(strings.TrimPrefix(tc.path, "/"), func(t *testing.T) {
			a := g.do("GET", tc.path, "")
			if a.status != tc.status || !strings.HasPrefix(a.header.Get("Content-Type"), tc.contentType) {
				t.Fatalf("got %d %q: %s", a.status, a.header.Get("Content-Type"), a.body)
			}
			for _, c := range tc.contains {
				if !strings.Contains(a.body, c) {
					t.Fatalf("the answer lacks %s:\n%s", c, a.body)
				}
			}
		})
	}
}

// The models endpoints answer HEAD as GET, without a body, and say which
// methods they allow otherwise.
func TestModelsEndpointsMethods(t *testing.T) {
	g := startGateway(t, nil)
	for _, path := range []string{"/v1/models", "/v1/models/gpt-4"} {
		conn, err := net.Dial("tcp", g.addr())
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(conn, "HEAD "+path+" HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, &http.Request{Method: "HEAD"})
		if err != nil || resp.StatusCode != 200 || resp.ContentLength <= 0 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("HEAD %s: %v %+v", path, err, resp)
		}
		if rest, _ := io.ReadAll(br); len(rest) != 0 {
			t.Fatalf("HEAD %s sent a body: %q", path, rest)
		}
		conn.Close()
		if a := g.do("DELETE", path, ""); a.status != 405 || a.header.Get("Allow") != "GET, HEAD" {
			t.Fatalf("DELETE %s: %d %v %s", path, a.status, a.header, a.body)
		}
	}
	// The official SDK's models.retrieve.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := sdkClient(g)
	m, err := c.Models.Get(ctx, "gpt-4")
	if err != nil || m.ID != "gpt-4" || m.OwnedBy != "llm-gateway" {
		t.Fatalf("Models.Get: %+v %v", m, err)
	}
	var apiErr *openai.Error
	if _, err := c.Models.Get(ctx, "gpt-5"); !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Fatalf("Models.Get of an unknown model: %v", err)
	}
}

func TestReadyzAndAdminBreakersShowEveryBreakerOpen(t *testing.T) {
	g := startGateway(t, func(c *config.Config) { c.Providers.Breaker.FailureThreshold = 1 })
	g.fault(mock.Rule{Provider: "*", Fault: mock.FaultServerError, Status: 500})
	if a := g.post(hello); a.status != 502 {
		t.Fatalf("got %d %s", a.status, a.raw)
	}
	if a := g.do("GET", "/readyz", ""); a.status != 503 || !strings.Contains(a.body, "circuit breaker is open") {
		t.Fatalf("readyz with every breaker open: %d %s", a.status, a.body)
	}
	a := g.do("GET", "/admin/breakers", "")
	var out struct {
		Breakers []providers.BreakerStatus `json:"breakers"`
	}
	if err := json.Unmarshal([]byte(a.body), &out); err != nil || len(out.Breakers) != 2 {
		t.Fatalf("admin/breakers: %v %s", err, a.body)
	}
	for _, b := range out.Breakers {
		if b.State != "open" || b.LastError != "server" || b.Trips != 1 || b.NextProbeAt.IsZero() || b.OpenedAt.IsZero() {
			t.Fatalf("breaker %s: %+v", b.Provider, b)
		}
		if d := time.Until(b.NextProbeAt); d < 25*time.Second || d > 31*time.Second {
			t.Fatalf("breaker %s probes in %s, want about open_timeout (30s)", b.Provider, d)
		}
	}
}

// Breakers move from open to half-open only when a call asks, so /readyz
// counts a breaker whose probe is due as ready: the next request probes it.
func TestReadyzIsReadyAgainOnceAProbeIsDue(t *testing.T) {
	cfg, err := config.Parse(config.DefaultYAML(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	clock := providers.NewFakeClock(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	srv, err := pipeline.New(pipeline.Config{Settings: cfg.Pipeline, Providers: cfg.Providers, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	readyz := func() (int, string) {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI("/readyz")
		srv.Handler()(&ctx)
		return ctx.Response.StatusCode(), string(ctx.Response.Body())
	}
	for _, b := range srv.Breakers() {
		for range cfg.Providers.Breaker.FailureThreshold {
			p, err := b.Admit()
			if err != nil {
				t.Fatal(err)
			}
			p.Done(providers.ClassServer)
		}
	}
	if code, body := readyz(); code != 503 || !strings.Contains(body, "circuit breaker is open") {
		t.Fatalf("every breaker open: %d %s", code, body)
	}
	clock.Advance(cfg.Providers.Breaker.OpenTimeout - time.Millisecond)
	if code, _ := readyz(); code != 503 {
		t.Fatalf("a millisecond before the probe is due: %d", code)
	}
	clock.Advance(time.Millisecond)
	if code, body := readyz(); code != 200 || !strings.Contains(body, `"ready"`) {
		t.Fatalf("once a probe is due: %d %s", code, body)
	}
}

func TestReadyzSaysDrainingOnceShutdownBegins(t *testing.T) {
	cfg, err := config.Parse(config.DefaultYAML(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	srv, err := pipeline.New(pipeline.Config{Settings: cfg.Pipeline, Providers: cfg.Providers})
	if err != nil {
		t.Fatal(err)
	}
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/readyz")
	srv.Handler()(&ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("before shutdown: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx.Response.Reset()
	srv.Handler()(&ctx)
	if ctx.Response.StatusCode() != 503 || !strings.Contains(string(ctx.Response.Body()), "draining") {
		t.Fatalf("during shutdown: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
}

const (
	gatewayKey = "gw-key-12345678"
	adminKey   = "adm-key-12345678"
)

func withAuth(c *config.Config) {
	c.Pipeline.Auth.Keys = []string{"gw-other-key-000", gatewayKey}
	c.Pipeline.Auth.AdminKeys = []string{adminKey}
}

func TestGatewayAuthGuardsV1AdminAndMetrics(t *testing.T) {
	g := startGateway(t, withAuth)
	for _, tc := range []struct {
		name     string
		method   string
		path     string
		auth     string // the Authorization header; "" sends none
		status   int
		scope    string // of the 401's message: "API" or "admin"
		reason   string // of the 401's log line
		response string // a part of a successful answer
	}{
		{"chat without a key is refused", "POST", "/v1/chat/completions", "", 401, "API", "missing_key", ""},
		{"chat with a wrong key is refused", "POST", "/v1/chat/completions", "Bearer gw-key-1234567", 401, "API", "invalid_key", ""},
		{"chat with a longer wrong key is refused", "POST", "/v1/chat/completions", "Bearer " + gatewayKey + "9", 401, "API", "invalid_key", ""},
		{"chat with another scheme is refused", "POST", "/v1/chat/completions", "Basic " + gatewayKey, 401, "API", "missing_key", ""},
		{"chat with the admin key is refused", "POST", "/v1/chat/completions", "Bearer " + adminKey, 401, "API", "invalid_key", ""},
		{"chat with a gateway key is served", "POST", "/v1/chat/completions", "Bearer " + gatewayKey, 200, "", "", `"chat.completion"`},
		{"the scheme is case-insensitive", "POST", "/v1/chat/completions", "bearer " + gatewayKey, 200, "", "", `"chat.completion"`},
		{"models without a key is refused", "GET", "/v1/models", "", 401, "API", "missing_key", ""},
		{"an unknown /v1 path without a key is refused", "GET", "/v1/secret", "", 401, "API", "missing_key", ""},
		{"models with a key is served", "GET", "/v1/models", "Bearer " + gatewayKey, 200, "", "", `"gpt-4"`},
		{"metrics without a key is refused", "GET", "/metrics", "", 401, "admin", "missing_key", ""},
		{"metrics with a gateway key is refused", "GET", "/metrics", "Bearer " + gatewayKey, 401, "admin", "invalid_key", ""},
		{"metrics with the admin key is served", "GET", "/metrics", "Bearer " + adminKey, 200, "", "", "gateway_requests_total"},
		{"admin without a key is refused", "GET", "/admin/breakers", "", 401, "admin", "missing_key", ""},
		{"admin with the admin key is served", "GET", "/admin/breakers", "Bearer " + adminKey, 200, "", "", `"breakers"`},
		{"healthz stays open", "GET", "/healthz", "", 200, "", "", `"ok"`},
		{"readyz stays open", "GET", "/readyz", "", 200, "", "", `"ready"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := ""
			if tc.method == "POST" {
				body = hello
			}
			var headers []string
			if tc.auth != "" {
				headers = []string{"Authorization", tc.auth}
			}
			id := "auth-" + strings.Map(func(r rune) rune {
				if r >= 'a' && r <= 'z' {
					return r
				}
				return '-'
			}, tc.name)
			headers = append(headers, "X-Request-ID", id)
			a := g.do(tc.method, tc.path, body, headers...)
			if a.status != tc.status {
				t.Fatalf("got %d: %s", a.status, a.body)
			}
			if tc.status == 200 {
				if !strings.Contains(a.body, tc.response) {
					t.Fatalf("answer lacks %s: %s", tc.response, a.body)
				}
				return
			}
			var e struct {
				Error struct{ Message, Type, Code string }
			}
			if err := json.Unmarshal([]byte(a.body), &e); err != nil {
				t.Fatalf("not the OpenAI error shape: %s", a.body)
			}
			if e.Error.Type != "invalid_request_error" || e.Error.Code != "invalid_api_key" ||
				!strings.Contains(e.Error.Message, "Authorization: Bearer") || !strings.Contains(e.Error.Message, tc.scope) {
				t.Fatalf("error %+v", e.Error)
			}
			if a.header.Get("WWW-Authenticate") == "" {
				t.Fatal("a 401 must say which scheme it wants")
			}
			lines := g.waitLines("action=unauthorized", "request_id="+id, "reason="+tc.reason)
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "WARN") {
				t.Fatalf("refusal not logged once: %v", lines)
			}
		})
	}
	fams := g.scrape("Authorization", "Bearer "+adminKey)
	if v, _ := metricValue(fams, "gateway_auth_failures_total", "scope", "api", "reason", "invalid"); v != 3 {
		t.Fatalf("api invalid refusals counted %v, want 3", v)
	}
	if v, _ := metricValue(fams, "gateway_auth_failures_total", "scope", "admin"); v != 3 {
		t.Fatalf("admin refusals counted %v, want 3", v)
	}
	log := g.log.String()
	for _, k := range []string{gatewayKey, adminKey, "gw-key-1234567"} {
		if strings.Contains(log, k) {
			t.Fatalf("the journal holds a key (%s):\n%s", k, log)
		}
	}
}

// TestSecretsNeverLeak drives successes and failures with recognisable
// provider and gateway keys and searches every output for them.
func TestSecretsNeverLeak(t *testing.T) {
	const openaiKey, anthropicKey = "sk-SECRET-openai-123", "sk-ant-SECRET-456789"
	env := map[string]string{"OPENAI_API_KEY": openaiKey, "ANTHROPIC_API_KEY": anthropicKey}
	g := startOps(t, opsOptions{
		// The mock wants another OpenAI key: every OpenAI call is an auth
		// failure that names the key it got (redacted, as OpenAI does).
		mock:   mock.Config{OpenAIKey: "other", AnthropicKey: anthropicKey},
		getenv: func(k string) string { return env[k] },
		edit: func(c *config.Config) {
			withAuth(c)
			c.Providers.Breaker.FailureThreshold = 10
		},
	})
	var outputs []string
	auth := []string{"Authorization", "Bearer " + gatewayKey}
	for i := 0; i < 2; i++ {
		a := g.post(hello, auth...)
		if a.status != 200 || a.str("provider") != "anthropic" {
			t.Fatalf("request %d: %d %s", i, a.status, a.raw)
		}
		outputs = append(outputs, a.raw)
	}
	// With Anthropic failing too, OpenAI's auth error is the last one: its
	// message (which names the key it got, redacted) reaches the client.
	g.fault(mock.Rule{Provider: "anthropic", Fault: mock.FaultServerError, Status: 500})
	for _, body := range []string{
		`{"model":"claude-3-5-sonnet","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"claude-3-5-sonnet","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
	} {
		a := g.do("POST", "/v1/chat/completions", body, auth...)
		if a.status != 502 || !strings.Contains(a.body, "Incorrect API key provided") {
			t.Fatalf("want a 502 with OpenAI's auth message: %d %s", a.status, a.body)
		}
		outputs = append(outputs, a.body)
	}
	outputs = append(outputs,
		g.do("POST", "/v1/chat/completions", `{"model":"gpt-4","messages":[{"role":"robot","content":"hi"}]}`, auth...).body,
		g.do("POST", "/v1/chat/completions", hello, "Authorization", "Bearer sk-SECRET-guess-000").body,
		g.do("GET", "/admin/breakers", "", "Authorization", "Bearer "+adminKey).body,
		g.do("GET", "/metrics", "", "Authorization", "Bearer "+adminKey).body,
		g.do("GET", "/v1/models", "", auth...).body,
		// fasthttp logs a request it cannot parse; the line must not
		// quote the request's bytes.
		g.raw("GET /v1/models HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer "+gatewayKey+"\r\nX-Bad: \x01"+openaiKey+"\r\nnot a header\r\n\r\n").body,
	)
	if len(g.lines("action=failed", "error=auth", "provider=openai")) == 0 {
		t.Fatalf("the OpenAI auth failures were not exercised:\n%s", g.log.String())
	}
	g.srv.Journal().Flush()
	outputs = append(outputs, g.log.String())
	for _, secret := range []string{"SECRET", openaiKey, anthropicKey, gatewayKey, adminKey} {
		for i, out := range outputs {
			if strings.Contains(out, secret) {
				t.Fatalf("output %d holds %q:\n%s", i, secret, out)
			}
		}
	}
}

func TestLimitsAnswerInTheOpenAIShape(t *testing.T) {
	msgs := func(n int) string {
		m := make([]string, n)
		for i := range m {
			m[i] = `{"role":"user","content":"hi"}`
		}
		return `{"model":"gpt-4","messages":[` + strings.Join(m, ",") + `]}`
	}
	content := func(s string) string { return `{"model":"gpt-4","messages":[{"role":"user","content":"` + s + `"}]}` }
	parts := `{"model":"gpt-4","messages":[{"role":"system","content":"abcde"},{"role":"user","content":[{"type":"text","text":"fghij"},{"type":"text","text":"k"}]}]}`
	for _, tc := range []struct {
		name    string
		edit    func(*config.Config)
		request func(g *gateway) rawAnswer
		status  int
		code    string
		message string
	}{
		{"a body over max_body_bytes is 413",
			func(c *config.Config) { c.Pipeline.Server.MaxBodyBytes = 1024 },
			func(g *gateway) rawAnswer {
				return g.do("POST", "/v1/chat/completions", content(strings.Repeat("a", 2000)))
			}, 413, "request_too_large", "1024 bytes"},
		{"more messages than max_messages is 400",
			func(c *config.Config) { c.Pipeline.Server.MaxMessages = 2 },
			func(g *gateway) rawAnswer { return g.do("POST", "/v1/chat/completions", msgs(3)) },
			400, "", "at most 2 messages"},
		{"contents over max_content_chars is 400, counted in characters",
			func(c *config.Config) { c.Pipeline.Server.MaxContentChars = 10 },
			func(g *gateway) rawAnswer {
				return g.do("POST", "/v1/chat/completions", content(strings.Repeat("é", 11)))
			}, 400, "", "total 11 characters; at most 10 are accepted (server.max_content_chars)"},
		{"text parts and every message count towards max_content_chars",
			func(c *config.Config) { c.Pipeline.Server.MaxContentChars = 10 },
			func(g *gateway) rawAnswer { return g.do("POST", "/v1/chat/completions", parts) },
			400, "", "total 11 characters"},
		{"contents at max_content_chars are served",
			func(c *config.Config) { c.Pipeline.Server.MaxContentChars = 10 },
			func(g *gateway) rawAnswer {
				return g.do("POST", "/v1/chat/completions", content(strings.Repeat("é", 10)))
			}, 200, "", ""},
		{"headers over max_header_bytes are 431",
			func(c *config.Config) { c.Pipeline.Server.MaxHeaderBytes = 1024 },
			func(g *gateway) rawAnswer {
				return g.do("POST", "/v1/chat/completions", content("hi"), "X-Padding", strings.Repeat("p", 2000))
			}, 431, "headers_too_large", "headers are too large"},
		{"headers within max_header_bytes are served",
			func(c *config.Config) { c.Pipeline.Server.MaxHeaderBytes = 4096 },
			func(g *gateway) rawAnswer {
				return g.do("POST", "/v1/chat/completions", content("hi"), "X-Padding", strings.Repeat("p", 2000))
			}, 200, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, tc.edit)
			a := tc.request(g)
			if a.status != tc.status {
				t.Fatalf("got %d: %s", a.status, a.body)
			}
			if tc.status == 200 {
				return
			}
			var e struct {
				Error struct {
					Message, Type string
					Code          *string
				}
			}
			if err := json.Unmarshal([]byte(a.body), &e); err != nil || e.Error.Type != "invalid_request_error" {
				t.Fatalf("not the OpenAI error shape: %v %s", err, a.body)
			}
			if tc.code != "" && (e.Error.Code == nil || *e.Error.Code != tc.code) {
				t.Fatalf("code %v, want %s: %s", e.Error.Code, tc.code, a.body)
			}
			if !strings.Contains(e.Error.Message, tc.message) {
				t.Fatalf("message %q lacks %q", e.Error.Message, tc.message)
			}
			if n := g.mock.Stats().Requests("openai") + g.mock.Stats().Requests("anthropic"); n != 0 {
				t.Fatalf("%d provider calls for a request over a limit", n)
			}
		})
	}
}

func TestSlowClientIsCutAfterReadTimeout(t *testing.T) {
	g := startGateway(t, func(c *config.Config) { c.Pipeline.Server.ReadTimeout = 300 * time.Millisecond })
	for _, tc := range []struct {
		name  string
		first string // sent at once; then one byte every 50 ms
	}{
		{"trickled headers", "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"},
		{"trickled body", "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", g.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			_, _ = io.WriteString(conn, tc.first)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; i < 100; i++ {
					time.Sleep(50 * time.Millisecond)
					if _, err := io.WriteString(conn, "x"); err != nil {
						return
					}
				}
			}()
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			a := readAnswer(t, conn)
			elapsed := time.Since(start)
			_ = conn.Close()
			<-done
			if a.status != 408 || !strings.Contains(a.body, `"request_timeout"`) {
				t.Fatalf("got %d %s", a.status, a.body)
			}
			if elapsed < 250*time.Millisecond || elapsed > 2*time.Second {
				t.Fatalf("cut after %s, want about read_timeout (300ms)", elapsed)
			}
		})
	}
	if v, _ := metricValue(g.scrape(), "gateway_transport_errors_total", "status", "408"); v != 2 {
		t.Fatalf("transport errors counted %v, want 2", v)
	}
}

// slowStreams makes every upstream stream wait before each chunk.
type slowStreams struct {
	providers.Provider
	delay time.Duration
}

func (p slowStreams) Stream(ctx context.Context, req *providers.ChatRequest, call providers.Call) (providers.Stream, error) {
	s, err := p.Provider.Stream(ctx, req, call)
	if err != nil {
		return nil, err
	}
	return slowStream{s, p.delay}, nil
}

type slowStream struct {
	providers.Stream
	delay time.Duration
}

func (s slowStream) Next(ctx context.Context, idle time.Duration) (*providers.Chunk, error) {
	time.Sleep(s.delay)
	return s.Stream.Next(ctx, idle)
}

func TestStreamOutlivesWriteTimeout(t *testing.T) {
	g := startOps(t, opsOptions{
		edit: func(c *config.Config) { c.Pipeline.Server.WriteTimeout = 100 * time.Millisecond },
		wrap: func(p providers.Provider) providers.Provider { return slowStreams{p, 40 * time.Millisecond} },
	})
	start := time.Now()
	out := rawStream(t, g, `{"model":"gpt-4","stream":true,"messages":[{"role":"user","content":"a stream longer than the write timeout"}]}`)
	if !strings.Contains(out, "data: [DONE]") || strings.Contains(out, `"error"`) {
		t.Fatalf("the stream was cut:\n%s", out)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("the stream took %s: not longer than the write timeout, the test proves nothing", d)
	}
	if a := g.post(hello); a.status != 200 {
		t.Fatalf("a plain answer under write_timeout: %d %s", a.status, a.raw)
	}
}

func TestConnectionLimitsAnswerInTheOpenAIShape(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(*config.Config)
		hold   int // idle connections opened first
		status int
		limit  string
	}{
		{"past max_conns", func(c *config.Config) { c.Pipeline.Server.MaxConns = 2 }, 2, 503, "max_conns"},
		{"past max_conns_per_ip", func(c *config.Config) { c.Pipeline.Server.MaxConnsPerIP = 1 }, 1, 429, "max_conns_per_ip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, tc.edit)
			var held []net.Conn
			for i := 0; i < tc.hold; i++ {
				c, err := net.Dial("tcp", g.addr())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				held = append(held, c)
			}
			a := waitForAnswer(t, g, hello, func(a rawAnswer) bool { return a.status == tc.status })
			var e struct {
				Error     struct{ Message, Type, Code string }
				RequestID string `json:"request_id"`
			}
			if err := json.Unmarshal([]byte(a.body), &e); err != nil || e.Error.Code != "too_many_connections" ||
				!strings.Contains(e.Error.Message, "server."+tc.limit) || a.header.Get("Retry-After") != "1" {
				t.Fatalf("refusal %d %v %s", a.status, a.header, a.body)
			}
			// Rendered for this refusal: its own request ID and date.
			date, err := http.ParseTime(a.header.Get("Date"))
			if e.RequestID == "" || a.header.Get("X-Request-ID") != e.RequestID || err != nil || time.Since(date) > time.Minute {
				t.Fatalf("refusal request_id %q, header %v", e.RequestID, a.header)
			}
			_ = held[0].Close()
			if a := waitForAnswer(t, g, hello, func(a rawAnswer) bool { return a.status == 200 }); a.status != 200 {
				t.Fatalf("after a connection closed: %d %s", a.status, a.body)
			}
			for _, c := range held[1:] {
				_ = c.Close()
			}
			fams := waitScrape(t, g)
			if v, _ := metricValue(fams, "gateway_connections_rejected_total", "limit", tc.limit); v < 1 {
				t.Fatalf("refusals counted %v", v)
			}
		})
	}
}

// waitForAnswer posts body on new connections until ok accepts the answer,
// or two seconds pass (a closed connection frees its slot only once the
// server has seen it close).
func waitForAnswer(t *testing.T, g *gateway, body string, ok func(rawAnswer) bool) rawAnswer {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		a := g.do("POST", "/v1/chat/completions", body)
		if ok(a) || time.Now().After(deadline) {
			return a
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitScrape scrapes /metrics once a connection slot is free (the
// connection of the previous request frees its slot only once the server has
// seen it close).
func waitScrape(t *testing.T, g *gateway) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		a := g.do("GET", "/metrics", "")
		if a.status == 200 || time.Now().After(deadline) {
			return g.parseMetrics(a)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// panickyProvider panics on a request whose last message says PANIC.
type panickyProvider struct{ providers.Provider }

func panics(req *providers.ChatRequest) bool {
	return strings.Contains(req.Messages[len(req.Messages)-1].Content.PlainText(), "PANIC")
}

func (p panickyProvider) Complete(ctx context.Context, req *providers.ChatRequest, call providers.Call) (*providers.ChatResponse, error) {
	if panics(req) {
		var m map[string]int
		m["boom"]++ // a real runtime panic: assignment to a nil map
	}
	return p.Provider.Complete(ctx, req, call)
}

func (p panickyProvider) Stream(ctx context.Context, req *providers.ChatRequest, call providers.Call) (providers.Stream, error) {
	text := req.Messages[len(req.Messages)-1].Content.PlainText()
	if how, ok := strings.CutPrefix(text, "PANIC-LATER-"); ok {
		st, err := p.Provider.Stream(ctx, req, call)
		if err != nil {
			return nil, err
		}
		return &panickyStream{Stream: st, how: how}, nil
	}
	if panics(req) {
		panic("stream boom")
	}
	return p.Provider.Stream(ctx, req, call)
}

// panickyStream breaks after the first chunk, once the handler has returned
// and the stream runs on its own goroutines: "read" panics in Next (the
// reader's goroutine); "write" returns no chunk and no error, which the
// writer's goroutine then dereferences.
type panickyStream struct {
	providers.Stream
	how string
	n   int
}

func (s *panickyStream) Next(ctx context.Context, idle time.Duration) (*providers.Chunk, error) {
	if s.n++; s.n == 2 {
		if s.how == "read" {
			panic("reader boom")
		}
		return nil, nil
	}
	return s.Stream.Next(ctx, idle)
}

func TestStreamPanicAfterTheFirstChunkEndsThatStreamOnly(t *testing.T) {
	g := startOps(t, opsOptions{wrap: func(p providers.Provider) providers.Provider { return panickyProvider{p} }})
	for _, tc := range []struct{ how, panic string }{
		{"read", "reader boom"},
		{"write", "nil pointer dereference"},
	} {
		t.Run(tc.how, func(t *testing.T) {
			id := "stream-panic-" + tc.how
			a := g.do("POST", "/v1/chat/completions",
				`{"model":"gpt-4","stream":true,"messages":[{"role":"user","content":"PANIC-LATER-`+tc.how+`"}]}`, "X-Request-ID", id)
			events := strings.Split(strings.TrimSpace(a.body), "\n\n")
			if a.status != 200 || len(events) != 2 || !strings.HasPrefix(events[0], "data: {") {
				t.Fatalf("got %d, %d events:\n%s", a.status, len(events), a.body)
			}
			var e struct {
				Error     struct{ Message, Type, Code string }
				RequestID string `json:"request_id"`
			}
			data, _ := strings.CutPrefix(events[1], "data: ")
			if err := json.Unmarshal([]byte(data), &e); err != nil || e.Error.Type != "server_error" ||
				e.Error.Code != "internal_error" || e.RequestID != id {
				t.Fatalf("the last event %q: %v", events[1], err)
			}
			lines := g.lines("action=panic", "request_id="+id)
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "ERROR") || !strings.Contains(lines[0], tc.panic) ||
				!strings.Contains(lines[0], "stream=true") {
				t.Fatalf("panic line %v", lines)
			}
			t.Log(lines[0])
			if tc.how == "read" && !strings.Contains(lines[0], "ops_test.go") {
				t.Fatalf("the stack does not name where the reader panicked: %s", lines[0])
			}
			expectJourney(t, g.journey(id), "received", "validated", "attempt", "panic", "gave_up")
			if gave := g.lines("request_id="+id, "action=gave_up"); !strings.Contains(gave[0], "status=500") || !strings.Contains(gave[0], "reason=panic") {
				t.Fatalf("give_up %v", gave)
			}
			if a := g.do("POST", "/v1/chat/completions", `{"model":"gpt-4","stream":true,"messages":[{"role":"user","content":"hi"}]}`); a.status != 200 || !strings.HasSuffix(strings.TrimSpace(a.body), "data: [DONE]") {
				t.Fatalf("the next stream: %d %s", a.status, a.body)
			}
		})
	}
	if s := g.srv.Breakers()["openai"].Snapshot(); s.State != "closed" || s.Failures != 0 || s.InFlightProbes != 0 {
		t.Fatalf("a panic is not the provider's failure: %+v", s)
	}
	m := g.scrape()
	for name, want := range map[string]float64{"gateway_panics_total": 2, "gateway_requests_in_flight": 0, "gateway_streams_in_flight": 0} {
		if v, _ := metricValue(m, name); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	g.srv.Journal().Flush()
	rep, err := pipeline.Replay(strings.NewReader(g.log.String()), pipeline.ReplayOptions{})
	if err != nil || rep.Err() != nil {
		t.Fatalf("replay: %v %v", err, rep.Err())
	}
}

func TestHandlerPanicIsAnswered500AndTheGatewayKeepsServing(t *testing.T) {
	g := startOps(t, opsOptions{wrap: func(p providers.Provider) providers.Provider { return panickyProvider{p} }})
	for _, tc := range []struct {
		name  string
		body  string
		panic string
	}{
		{"plain", `{"model":"gpt-4","messages":[{"role":"user","content":"PANIC"}]}`, "assignment to entry in nil map"},
		{"stream", `{"model":"gpt-4","stream":true,"messages":[{"role":"user","content":"PANIC"}]}`, "stream boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "panic-" + tc.name
			a := g.do("POST", "/v1/chat/completions", tc.body, "X-Request-ID", id)
			var e struct {
				Error     struct{ Message, Type, Code string }
				RequestID string `json:"request_id"`
			}
			if err := json.Unmarshal([]byte(a.body), &e); err != nil || a.status != 500 ||
				e.Error.Type != "server_error" || e.Error.Code != "internal_error" || e.RequestID != id {
				t.Fatalf("got %d %v %s", a.status, err, a.body)
			}
			lines := g.lines("action=panic", "request_id="+id)
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "ERROR") || !strings.Contains(lines[0], tc.panic) ||
				!strings.Contains(lines[0], "ops_test.go") {
				t.Fatalf("panic line %v", lines)
			}
			t.Log(lines[0])
			expectJourney(t, g.journey(id), "received", "validated", "attempt", "panic", "gave_up")
			if gave := g.lines("request_id="+id, "action=gave_up"); !strings.Contains(gave[0], "status=500") || !strings.Contains(gave[0], "reason=panic") {
				t.Fatalf("give_up %v", gave)
			}
			if a := g.post(hello); a.status != 200 {
				t.Fatalf("after the panic: %d %s", a.status, a.raw)
			}
		})
	}
	if s := g.srv.Breakers()["openai"].Snapshot(); s.State != "closed" || s.Failures != 0 {
		t.Fatalf("a panic is not the provider's failure: %+v", s)
	}
	if v, _ := metricValue(g.scrape(), "gateway_panics_total"); v != 2 {
		t.Fatalf("panics counted %v", v)
	}
	g.srv.Journal().Flush()
	rep, err := pipeline.Replay(strings.NewReader(g.log.String()), pipeline.ReplayOptions{})
	if err != nil || rep.Err() != nil {
		t.Fatalf("replay: %v %v", err, rep.Err())
	}
}

func TestOperationsKeysAreValidatedByName(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want string
	}{
		{"server: {max_content_chars: -1}", "server.max_content_chars: must be at least 1"},
		{"server: {max_header_bytes: 100}", "server.max_header_bytes: must be between 1024 and 1048576, got 100"},
		{"server: {max_header_bytes: 2000000}", "server.max_header_bytes: must be between 1024 and 1048576"},
		{"server: {max_conns: -5}", "server.max_conns: must be at least 1"},
		{"server: {max_conns_per_ip: -1}", "server.max_conns_per_ip: must not be negative"},
		{"server: {write_timeout: -1s}", "server.write_timeout: must be a positive duration"},
		{"server: {drain_timeout: -1s}", "server.drain_timeout: must be a positive duration"},
		{"auth: {keys: [short]}", "auth.keys[0]: must be at least 8 characters"},
	} {
		t.Run(tc.yaml, func(t *testing.T) {
			yml := tc.yaml + `
providers: {openai: {kind: openai, base_url: "http://127.0.0.1:8001"}}
routes: {gpt-4: [{provider: openai, model: gpt-4}]}
`
			_, err := config.Parse([]byte(yml), func(string) string { return "" })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	cfg, err := config.Parse(config.DefaultYAML(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Pipeline.Server; s.MaxContentChars != 1_000_000 || s.MaxHeaderBytes != 8192 || s.MaxConns != 10_000 ||
		s.MaxConnsPerIP != 0 || s.WriteTimeout != 30*time.Second || s.DrainTimeout != 30*time.Second {
		t.Fatalf("defaults %+v", s)
	}
}

func TestShutdownReportsRequestsStillRunningAtTheDrainTimeout(t *testing.T) {
	g := startOps(t, opsOptions{mock: mock.Config{Latency: 600 * time.Millisecond},
		edit: func(c *config.Config) { c.Pipeline.Policy.AttemptTimeout = 5 * time.Second }})
	done := make(chan int, 1)
	go func() {
		status, _, _ := exchange(g.addr(), "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-Request-ID: slow-one\r\n"+
			"Content-Type: application/json\r\nContent-Length: "+itoa(len(hello))+"\r\n\r\n"+hello, nil)
		done <- status
	}()
	g.waitLines("request_id=slow-one", "action=attempt")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := g.srv.Shutdown(ctx)
	if err == nil || !strings.Contains(err.Error(), "1 request(s) still in flight") {
		t.Fatalf("Shutdown: %v", err)
	}
	if l := g.lines("action=stopped", "drained=false", "in_flight=1"); len(l) != 1 || !strings.HasPrefix(l[0], "WARN") {
		t.Fatalf("stopped line %v\n%s", l, g.log.String())
	}
	// In this process the server still finishes it; the orchestrator would
	// have exited with status 1.
	if status := <-done; status != 200 {
		t.Fatalf("the request left running got %d", status)
	}
}

// Two mistakes are refused on a connection's first bytes, at once, where
// fasthttp alone answered only after read_timeout (30 s here): a TLS client
// on this plain-HTTP port, and a request typed with bare LF line endings.
// (fasthttp did refuse a ClientHello at once when one of its bytes happened
// to be a line feed, as Go's has in its cipher-suite list: the first case
// is the real client, the second a hello with no line feed.)
func TestRefusedOnTheFirstBytesAtOnce(t *testing.T) {
	g := startOps(t, opsOptions{})
	dial := func() net.Conn {
		c, err := net.Dial("tcp", g.addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		// Well under read_timeout: without the refusal, this deadline is
		// what ends the wait, as a timeout.
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	err := tls.Client(dial(), &tls.Config{ServerName: "gw", InsecureSkipVerify: true}).Handshake()
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("handshake: %v, want a refusal before the deadline", err)
	}
	t.Log(err)
	for _, tc := range []struct{ name, send, code string }{
		{"tls_hello_without_a_line_feed", "\x16\x03\x01\x00\x05hello", "tls_on_plain_http"},
		{"bare_lf", "POST /v1/chat/completions HTTP/1.1\nHost: gw\nContent-Type: application/json\nContent-Length: 2\n\n{}", "bare_lf"},
	} {
		conn := dial()
		if _, err := io.WriteString(conn, tc.send); err != nil {
			t.Fatal(err)
		}
		a := readAnswer(t, conn)
		_ = conn.Close() // the refusal's drain ends: nothing more may be counted
		if a.status != 400 || !strings.Contains(a.body, `"code":"`+tc.code+`"`) || a.header.Get("X-Request-ID") == "" {
			t.Fatalf("%s: got %d %v %s", tc.name, a.status, a.header, a.body)
		}
	}
	// A request line split across reads still reaches fasthttp.
	conn := dial()
	for _, part := range []string{"POST /v1/chat/com", strings.TrimPrefix(hostileMsg(hello), "POST /v1/chat/com")} {
		if _, err := io.WriteString(conn, part); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // two reads, most likely; either way the answer is 200
	}
	if a := readAnswer(t, conn); a.status != 200 {
		t.Fatalf("after: %d %s", a.status, a.body)
	}
	// Each refusal is counted once, by the refusal (fasthttp's error
	// handler must not count it again when the read fails).
	if v, _ := metricValue(g.scrape(), "gateway_transport_errors_total", "status", "400"); v != 3 {
		t.Fatalf("transport errors with status 400: %v, want 3", v)
	}
}

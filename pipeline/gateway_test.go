package pipeline_test

import (
	"bytes"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llm-gateway/gateway/mock"
	"github.com/llm-gateway/gateway/pipeline"
	"github.com/llm-gateway/gateway/pipeline/config"
	"github.com/llm-gateway/gateway/providers"
)

// syncBuffer collects the journal for assertions.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// gateway is an orchestrator and a mock provider on free loopback ports.
type gateway struct {
	t    *testing.T
	url  string
	mock *mock.Server
	srv  *pipeline.Server
	log  *syncBuffer
}

// fastPolicy shortens the demo's timings so the scenarios run in
// milliseconds: 150 ms attempt timeout, backoff 40 ms → 80 ms.
func fastPolicy(c *config.Config) {
	c.Pipeline.Policy.AttemptTimeout = 150 * time.Millisecond
	c.Pipeline.Policy.Backoff.Base = 40 * time.Millisecond
	c.Pipeline.Policy.Backoff.Max = time.Second
	c.Pipeline.Policy.Deadline = 5 * time.Second
}

// startGateway starts both services on the embedded default configuration,
// pointed at the mock, with edit applied to the configuration (startOps, in
// ops_helpers_test.go, is the same with more options). At cleanup the
// gateway drains and its journal must replay cleanly.
func startGateway(t *testing.T, edit func(*config.Config)) *gateway {
	t.Helper()
	return startOps(t, opsOptions{edit: edit})
}

func (g *gateway) fault(r mock.Rule) {
	g.t.Helper()
	if err := g.mock.AddFault(r); err != nil {
		g.t.Fatal(err)
	}
}

// answer is the gateway's JSON answer, success or error.
type answer struct {
	status  int
	header  map[string]string
	body    map[string]any
	raw     string
	elapsed time.Duration
}

func (a answer) str(k string) string { s, _ := a.body[k].(string); return s }
func (a answer) num(k string) int    { f, _ := a.body[k].(float64); return int(f) }
func (a answer) errField(k string) string {
	e, _ := a.body["error"].(map[string]any)
	s, _ := e[k].(string)
	return s
}

func (g *gateway) post(body string, headers ...string) answer {
	g.t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(g.url + "/v1/chat/completions")
	req.Header.SetMethod("POST")
	req.Header.SetContentType("application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	req.SetBodyString(body)
	start := time.Now()
	if err := fasthttp.DoTimeout(req, resp, 20*time.Second); err != nil {
		g.t.Fatalf("POST: %v", err)
	}
	a := answer{status: resp.StatusCode(), header: map[string]string{}, raw: string(resp.Body()), elapsed: time.Since(start)}
	resp.Header.VisitAll(func(k, v []byte) { a.header[strings.ToLower(string(k))] = string(v) })
	if err := json.Unmarshal(resp.Body(), &a.body); err != nil {
		g.t.Fatalf("answer is not JSON: %v: %s", err, resp.Body())
	}
	return a
}

// journey returns the actions logged for one request, in order.
func (g *gateway) journey(id string) []string {
	g.srv.Journal().Flush()
	var actions []string
	for _, line := range strings.Split(g.log.String(), "\n") {
		if !strings.Contains(line, "request_id="+id+" ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "action="); ok {
				actions = append(actions, v)
			}
		}
	}
	return actions
}

// lines returns the journal lines that mention every needle.
func (g *gateway) lines(needles ...string) []string {
	g.srv.Journal().Flush()
	var out []string
next:
	for _, line := range strings.Split(g.log.String(), "\n") {
		for _, n := range needles {
			if !strings.Contains(line, n) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

// waitLines polls the journal until a line with every needle appears (the
// end of a stream is logged by its writer, after the client has its bytes),
// or five seconds pass.
func (g *gateway) waitLines(needles ...string) []string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if l := g.lines(needles...); len(l) > 0 || time.Now().After(deadline) {
			return l
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const hello = `{"model":"gpt-4","messages":[{"role":"user","content":"Hello"}],"temperature":0.7}`

func expectJourney(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("journey\n got: %v\nwant: %v", got, want)
	}
}

func TestScenarioHappyPath(t *testing.T) {
	g := startGateway(t, nil)
	a := g.post(hello)
	if a.status != 200 || a.num("attempts") != 1 || a.str("provider") != "openai" {
		t.Fatalf("got %d %s", a.status, a.raw)
	}
	if !strings.Contains(a.str("content"), "Hello") || a.str("object") != "chat.completion" {
		t.Fatalf("content/object wrong: %s", a.raw)
	}
	id := a.str("request_id")
	if !strings.HasPrefix(id, "req_") || a.header["x-request-id"] != id {
		t.Fatalf("request id %q, header %q", id, a.header["x-request-id"])
	}
	expectJourney(t, g.journey(id), "received", "validated", "attempt", "success")
	if e := g.mock.Log(); len(e) != 1 || e[0].RequestID != id {
		t.Fatalf("the provider did not get the request id: %+v", e)
	}
}

func TestScenarioTimeoutRetriesWithBackoffThenSucceeds(t *testing.T) {
	g := startGateway(t, nil)
	g.fault(mock.Rule{Provider: "openai", Fault: mock.FaultTimeout, Count: 2, DelayMS: 1000})
	a := g.post(hello)
	if a.status != 200 || a.num("attempts") != 3 || a.str("provider") != "openai" {
		t.Fatalf("got %d %s", a.status, a.raw)
	}
	id := a.str("request_id")
	expectJourney(t, g.journey(id), "received", "validated",
		"attempt", "failed", "backoff", "attempt", "failed", "backoff", "attempt", "success")
	waits := g.lines("request_id="+id, "action=backoff")
	if !strings.Contains(waits[0], "wait=40ms") || !strings.Contains(waits[1], "wait=80ms") {
		t.Fatalf("waits must double: %v", waits)
	}
	if f := g.lines("request_id="+id, "action=failed"); !strings.Contains(f[0], "error=timeout") {
		t.Fatalf("failure not classed as timeout: %v", f)
	}
}

func TestScenarioRateLimitFailsOverAtOnce(t *testing.T) {
	g := startGateway(t, nil)
	g.fault(mock.Rule{Provider: "openai", Fault: mock.FaultRateLimit, Count: 1})
	a := g.post(hello)
	if a.status != 200 || a.num("attempts") != 2 || a.str("provider") != "anthropic" {
		t.Fatalf("got %d %s", a.status, a.raw)
	}
	if a.str("object") != "chat.completion" || !strings.Contains(a.str("content"), "Hello") {
		t.Fatalf("the Anthropic answer was not translated: %s", a.raw)
	}
	id := a.str("request_id")
	expectJourney(t, g.journey(id), "received", "validated", "attempt", "failed", "failover", "attempt", "success")
	st := g.mock.Stats()
	if st.Outcome("openai", mock.FaultRateLimit) != 1 || st.Outcome("anthropic", mock.OutcomeOK) != 1 {
		t.Fatalf("mock stats %+v", st)
	}
}

func TestScenarioBreakerSkipsAFailingProvider(t *testing.T) {
	g := startGateway(t, nil)
	g.fault(mock.Rule{Provider: "openai", Fault: mock.FaultRateLimit})
	for i := 0; i < 5; i++ {
		if a := g.post(hello); a.status != 200 || a.str("provider") != "anthropic" {
			t.Fatalf("request %d: %d %s", i+1, a.status, a.raw)
		}
	}
	if n := len(g.lines("machine=breaker", "action=trip", "provider=openai")); n != 1 {
		t.Fatalf("want exactly one trip, got %d", n)
	}
	before := g.mock.Stats().Requests("openai")
	a := g.post(hello)
	if a.status != 200 || a.str("provider") != "anthropic" || a.num("attempts") != 1 {
		t.Fatalf("got %d %s", a.status, a.raw)
	}
	if after := g.mock.Stats().Requests("openai"); after != before {
		t.Fatalf("openai was called %d times with its breaker open", after-before)
	}
	expectJourney(t, g.journey(a.str("request_id")), "received", "validated", "skipped", "failover", "attempt", "success")
}

func TestScenarioValidationFailsFastWithoutACall(t *testing.T) {
	g := startGateway(t, nil)
	a := g.post(`{"model":"gpt-4","messages":[{"role":"robot","content":"Hello"}]}`)
	if a.status != 400 || a.errField("param") != "messages[0].role" || a.errField("type") != "invalid_request_error" {
		t.Fatalf("got %d %s", a.status, a.raw)
	}
	if a.num("attempts") != 0 || a.str("request_id") == "" {
		t.Fatalf("error answer lacks the gateway fields: %s", a.raw)
	}
	expectJourney(t, g.journey(a.str("request_id")), "received", "rejected")
	if n := g.mock.Stats().Requests("openai") + g.mock.Stats().Requests("anthropic"); n != 0 {
		t.Fatalf("%d provider calls for an invalid request", n)
	}
}

func TestUnknownModelIs404ModelNotFound(t *testing.T) {
	g := startGateway(t, nil)
	a := g.post(`{"model":"gpt-99","messages":[{"role":"user","content":"hi"}]}`)
	if a.status != 404 || a.errField("code") != "model_not_found" {
		t.Fatalf("got %d %s", a.status, a.raw)
	}
}

func TestEveryTargetRateLimitedIs429WithRetryAfter(t *testing.T) {
	g := startGateway(t, func(c *config.Config) { c.Pipeline.Policy.Deadline = 500 * time.Millisecond })
	g.fault(mock.Rule{Provider: "*", Fault: mock.FaultRateLimit, RetryAfterS: 3})
	a := g.post(hello)
	if a.status != 429 || a.header["retry-after"] != "3" || a.num("attempts") != 2 {
		t.Fatalf("got %d retry-after=%q %s", a.status, a.header["retry-after"], a.raw)
	}
}

func TestEveryBreakerOpenIs503WithRetryAfter(t *testing.T) {
	g := startGateway(t, func(c *config.Config) { c.Providers.Breaker.FailureThreshold = 1 })
	g.fault(mock.Rule{Provider: "*", Fault: mock.FaultServerError, Status: 500})
	if a := g.post(hello); a.status != 502 {
		t.Fatalf("first request: got %d %s", a.status, a.raw)
	}
	calls := g.mock.Stats().Requests("openai") + g.mock.Stats().Requests("anthropic")
	a := g.post(hello)
	if a.status != 503 || a.header["retry-after"] == "" || a.errField("code") != "providers_unavailable" {
		t.Fatalf("got %d %v %s", a.status, a.header, a.raw)
	}
	if n := g.mock.Stats().Requests("openai") + g.mock.Stats().Requests("anthropic"); n != calls {
		t.Fatalf("%d calls with every breaker open", n-calls)
	}
}

func TestDeadlineIs504(t *testing.T) {
	g := startGateway(t, func(c *config.Config) {
		c.Pipeline.Policy.Deadline = 300 * time.Millisecond
		c.Pipeline.Policy.AttemptTimeout = time.Second
	})
	g.fault(mock.Rule{Provider: "*", Fault: mock.FaultHang})
	a := g.post(hello)
	if a.status != 504 || a.header["x-should-retry"] != "false" {
		t.Fatalf("got %d %v %s", a.status, a.header, a.raw)
	}
}

func TestProvider400ComesBackAfterOneAttempt(t *testing.T) {
	g := startGateway(t, nil)
	g.fault(mock.Rule{Provider: "openai", Fault: mock.FaultServerError, Status: 400, Count: 1})
	a := g.post(hello)
	if a.status != 400 || a.num("attempts") != 1 || a.errField("message") == "" {
		t.Fatalf("got %d %s", a.status, a.raw)
	}
	if g.mock.Stats().Requests("anthropic") != 0 {
		t.Fatal("an invalid request must not fail over")
	}
}

func TestIncomingRequestIDIsKept(t *testing.T) {
	g := startGateway(t, nil)
	a := g.post(hello, "X-Request-ID", "trace-42.a:b")
	if a.str("request_id") != "trace-42.a:b" || g.mock.Log()[0].RequestID != "trace-42.a:b" {
		t.Fatalf("id not kept: %s", a.raw)
	}
	b := g.post(hello, "X-Request-ID", "bad id with spaces")
	if !strings.HasPrefix(b.str("request_id"), "req_") {
		t.Fatalf("an invalid id must be replaced: %s", b.raw)
	}
}

func TestClientThatLeavesCancelsTheAttempt(t *testing.T) {
	g := startGateway(t, func(c *config.Config) { c.Pipeline.Policy.AttemptTimeout = 10 * time.Second })
	g.fault(mock.Rule{Provider: "openai", Fault: mock.FaultTimeout, DelayMS: 3000, Count: 1})
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-ID: leaver\r\nContent-Length: " +
		itoa(len(hello)) + "\r\n\r\n" + hello))
	time.Sleep(200 * time.Millisecond) // let the attempt start
	start := time.Now()
	_ = conn.Close()
	for time.Since(start) < 2*time.Second {
		if len(g.lines("request_id=leaver", "action=gave_up")) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	gave := g.lines("request_id=leaver", "action=gave_up")
	if len(gave) != 1 || !strings.Contains(gave[0], "status=499") {
		t.Fatalf("the request did not end when its client left: %v\n%s", gave, g.log.String())
	}
	if time.Since(start) > 1500*time.Millisecond {
		t.Fatal("the attempt went on for the full provider delay")
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// A target whose provider cannot serve the request (Anthropic has no n > 1)
// is passed over like one whose breaker is open: no attempt, no call, no
// permit. The request is answered by a target that can serve it, or with the
// failure of the one that could, or, when none can, with the refusal.
func TestTargetThatCannotServeTheRequestIsPassedOver(t *testing.T) {
	g := startGateway(t, func(c *config.Config) {
		c.Providers.Routes["claude-only"] = []providers.Target{{Provider: "anthropic", Model: "claude-3-5-sonnet-20241022"}}
	})
	two := func(model, id string) answer {
		return g.post(`{"model":"`+model+`","n":2,"messages":[{"role":"user","content":"Hi"}]}`, "X-Request-ID", id)
	}
	calls := func() (int64, int64) { st := g.mock.Stats(); return st.Requests("openai"), st.Requests("anthropic") }

	// claude-3-5-sonnet: Anthropic first, OpenAI second.
	a := two("claude-3-5-sonnet", "unsupported-first")
	if a.status != 200 || a.str("provider") != "openai" || a.num("attempts") != 1 {
		t.Fatalf("got %d %s", a.status, a.raw)
	}
	expectJourney(t, g.journey("unsupported-first"), "received", "validated", "skipped", "failover", "attempt", "success")
	if f := g.lines("request_id=unsupported-first", "action=failover"); !strings.Contains(f[0], "reason=unsupported") {
		t.Fatalf("failover %v", f)
	}
	if s := g.lines("request_id=unsupported-first", "action=skipped"); !strings.Contains(s[0], "provider=anthropic") || !strings.Contains(s[0], "param=n") {
		t.Fatalf("skipped %v", s)
	}

	// gpt-4: OpenAI rate limited once (Retry-After 1 s), Anthropic cannot
	// serve n > 1: OpenAI is the last target after all, so the request
	// waits for its round instead of failing over or blaming the request.
	o0, a0 := calls()
	g.fault(mock.Rule{Provider: "openai", Fault: mock.FaultRateLimit, Count: 1})
	a = two("gpt-4", "unsupported-next")
	if a.status != 200 || a.num("attempts") != 2 || a.str("provider") != "openai" {
		t.Fatalf("got %d %s", a.status, a.raw)
	}
	expectJourney(t, g.journey("unsupported-next"), "received", "validated", "attempt", "failed", "skipped", "backoff", "attempt", "success")
	if o1, a1 := calls(); o1-o0 != 2 || a1 != a0 {
		t.Fatalf("calls: openai +%d, anthropic +%d; want +2, +0", o1-o0, a1-a0)
	}

	// claude-only: nothing can serve it; the refusal names the parameter.
	a = two("claude-only", "unsupported-all")
	if a.status != 400 || a.num("attempts") != 0 || a.errField("param") != "n" || !strings.Contains(a.errField("message"), "n > 1") {
		t.Fatalf("got %d %s", a.status, a.raw)
	}
	expectJourney(t, g.journey("unsupported-all"), "received", "validated", "skipped", "gave_up")
	if gave := g.lines("request_id=unsupported-all", "action=gave_up"); !strings.Contains(gave[0], "reason=unsupported") {
		t.Fatalf("give_up %v", gave)
	}
	if _, a2 := calls(); a2 != a0 {
		t.Fatalf("anthropic was called %d times", a2-a0)
	}
	if s := g.srv.Breakers()["anthropic"].Snapshot(); s.Failures != 0 || s.Successes != 0 {
		t.Fatalf("the anthropic breaker saw a call: %+v", s)
	}
}

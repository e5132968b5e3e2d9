package pipeline_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/llm-gateway/gateway/fsm"
	"github.com/llm-gateway/gateway/mock"
	"github.com/llm-gateway/gateway/pipeline/config"
)

// The fault matrix: every fault the mock can inject, a provider process that
// dies and comes back, a provider that accepts and never answers and one that
// trickles its answer, each with one provider failing and with both. Whatever
// happens upstream, the client gets a well-formed answer (a success, or the
// documented error in the OpenAI shape) before its deadline, the journal
// replays cleanly (startGateway checks it at cleanup) and the breakers end in
// the state the design says. docs/reliability.md lists what was tried.

// The matrix's timings, short enough for CI: attempt timeout 150 ms, backoff
// 20 ms → 40 ms, deadline 3 s, and a breaker that trips after 3 consecutive
// failures, so one request that uses up its attempts on a target opens it.
// The slowest journeys (six attempts that time out) take about 1 s: the
// deadline leaves them room on a CI machine whose timers fire late, so that
// they end as designed (502) rather than at the deadline (504), which has
// rows of its own.
const (
	relAttempt   = 150 * time.Millisecond
	relDeadline  = 3 * time.Second
	relStreamIdl = 200 * time.Millisecond
	// relSlack is what an answer may take past the deadline: the answer's
	// own writing, and the scheduler under -race on a loaded CI machine.
	relSlack = 400 * time.Millisecond
)

func relPolicy(c *config.Config) {
	p := &c.Pipeline.Policy
	p.AttemptTimeout = relAttempt
	p.FirstTokenTimeout = relAttempt
	p.StreamIdleTimeout = relStreamIdl
	p.Deadline = relDeadline
	p.Backoff.Base = 20 * time.Millisecond
	p.Backoff.Max = 40 * time.Millisecond
	p.Backoff.Factor = 2
	c.Providers.Breaker.FailureThreshold = 3
	c.Providers.Breaker.OpenTimeout = 30 * time.Second
}

// relBaseURL points one provider of the configuration at another upstream.
func relBaseURL(c *config.Config, provider, url string) {
	ps := c.Providers.Providers[provider]
	ps.BaseURL = url
	c.Providers.Providers[provider] = ps
}

// relAnswer is one answer read off the wire, with its timings.
type relAnswer struct {
	status    int
	header    http.Header
	body      []byte
	firstByte time.Duration // until the status line and headers
	total     time.Duration // until the end of the body
	err       error         // the connection failed before an answer
}

// relRequestBody is a chat request for model; stream asks for SSE.
func relRequestBody(model, text string, stream bool) string {
	s := ""
	if stream {
		s = `"stream":true,`
	}
	return `{"model":"` + model + `",` + s + `"messages":[{"role":"user","content":"` + text + `"}]}`
}

// relDo sends one POST /v1/chat/completions on its own connection and reads
// the whole answer, within limit.
func relDo(addr, body string, limit time.Duration, headers ...string) relAnswer {
	start := time.Now()
	conn, err := net.DialTimeout("tcp", addr, limit)
	if err != nil {
		return relAnswer{err: err}
	}
	defer conn.Close()
	_ = conn.SetDeadline(start.Add(limit))
	var b strings.Builder
	b.WriteString("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Type: application/json\r\n")
	for i := 0; i+1 < len(headers); i += 2 {
		b.WriteString(headers[i] + ": " + headers[i+1] + "\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return relAnswer{err: err}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return relAnswer{err: err}
	}
	a := relAnswer{status: resp.StatusCode, header: resp.Header, firstByte: time.Since(start)}
	a.body, a.err = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	a.total = time.Since(start)
	return a
}

// relDocumented are the statuses a chat completion may end with when the
// request itself is valid (DESIGN §5).
var relDocumented = map[int]bool{200: true, 429: true, 502: true, 503: true, 504: true}

// relStreamEnd says how a 200 event stream ended.
type relStreamEnd int

const (
	relNotStream  relStreamEnd = iota
	relDone                    // data: [DONE]
	relErrorEvent              // an OpenAI error payload, after the first byte
)

// relCheck asserts that a is a well-formed answer of the gateway: a
// chat.completion, an SSE stream that ends in [DONE] or an error event, or an
// error in the OpenAI shape with the gateway's fields (Retry-After where the
// status promises it). It returns the provider that answered (for a 200) and
// how a stream ended.
func relCheck(a relAnswer) (provider string, end relStreamEnd, err error) {
	if a.err != nil {
		return "", 0, fmt.Errorf("no answer: %w", a.err)
	}
	if !relDocumented[a.status] {
		return "", 0, fmt.Errorf("status %d is not documented for a valid request: %s", a.status, a.body)
	}
	ct := a.header.Get("Content-Type")
	if a.status == 200 && strings.HasPrefix(ct, "text/event-stream") {
		end, err := relCheckSSE(a.body)
		return a.header.Get("X-Gateway-Provider"), end, err
	}
	if !strings.HasPrefix(ct, "application/json") {
		return "", 0, fmt.Errorf("status %d with content type %q: %s", a.status, ct, a.body)
	}
	var body map[string]any
	if err := json.Unmarshal(a.body, &body); err != nil {
		return "", 0, fmt.Errorf("the answer is not JSON: %v: %s", err, a.body)
	}
	id, _ := body["request_id"].(string)
	if id == "" || a.header.Get("X-Request-ID") != id {
		return "", 0, fmt.Errorf("request_id %q, header %q", id, a.header.Get("X-Request-ID"))
	}
	if _, ok := body["attempts"].(float64); !ok {
		return "", 0, fmt.Errorf("no attempts field: %s", a.body)
	}
	if _, ok := body["total_latency_ms"].(float64); !ok {
		return "", 0, fmt.Errorf("no total_latency_ms field: %s", a.body)
	}
	if a.status == 200 {
		p, _ := body["provider"].(string)
		if body["object"] != "chat.completion" || p == "" {
			return "", 0, fmt.Errorf("not a chat.completion: %s", a.body)
		}
		if _, ok := body["content"].(string); !ok {
			return "", 0, fmt.Errorf("no content: %s", a.body)
		}
		return p, relNotStream, nil
	}
	if err := relCheckErrorObject(body["error"]); err != nil {
		return "", 0, fmt.Errorf("%v: %s", err, a.body)
	}
	if (a.status == 429 || a.status == 503) && a.header.Get("Retry-After") == "" {
		return "", 0, fmt.Errorf("%d without Retry-After", a.status)
	}
	return "", relNotStream, nil
}

// relCheckErrorObject checks the OpenAI error object: message, type, param
// and code all present, message and type non-empty strings.
func relCheckErrorObject(v any) error {
	e, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("no error object")
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := e[k]; !ok {
			return fmt.Errorf("error object without %q", k)
		}
	}
	if m, _ := e["message"].(string); m == "" {
		return fmt.Errorf("error without a message")
	}
	if ty, _ := e["type"].(string); ty == "" {
		return fmt.Errorf("error without a type")
	}
	return nil
}

// relCheckSSE checks an OpenAI event stream: every event a JSON chunk, the
// last one [DONE] or an error payload, nothing after it.
func relCheckSSE(body []byte) (relStreamEnd, error) {
	var end relStreamEnd
	chunks := 0
	for _, ev := range strings.Split(string(body), "\n\n") {
		ev = strings.TrimSpace(ev)
		if ev == "" || strings.HasPrefix(ev, ":") {
			continue
		}
		if end != relNotStream {
			return 0, fmt.Errorf("an event after the end of the stream: %q", ev)
		}
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok {
			return 0, fmt.Errorf("not a data event: %q", ev)
		}
		if data == "[DONE]" {
			end = relDone
			continue
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(data), &v); err != nil {
			return 0, fmt.Errorf("event is not JSON: %q", data)
		}
		if e, ok := v["error"]; ok {
			if err := relCheckErrorObject(e); err != nil {
				return 0, fmt.Errorf("error event: %v: %q", err, data)
			}
			end = relErrorEvent
			continue
		}
		if v["object"] != "chat.completion.chunk" {
			return 0, fmt.Errorf("not a chunk: %q", data)
		}
		chunks++
	}
	if end == relNotStream {
		return 0, fmt.Errorf("the stream ended without [DONE] or an error event after %d chunks", chunks)
	}
	if chunks == 0 {
		return 0, fmt.Errorf("a 200 stream without a single chunk")
	}
	return end, nil
}

// relInTime asserts the answer came within the request's deadline: a plain
// answer as a whole, a stream up to its first byte (what the deadline
// bounds); the rest of a stream is bounded by the idle timeout.
func relInTime(t *testing.T, a relAnswer, deadline time.Duration, stream bool) {
	t.Helper()
	if a.firstByte > deadline+relSlack {
		t.Errorf("the answer began after %s, past the deadline %s (+%s slack)", a.firstByte, deadline, relSlack)
	}
	if !stream && a.total > deadline+relSlack {
		t.Errorf("the answer took %s, past the deadline %s (+%s slack)", a.total, deadline, relSlack)
	}
}

const (
	relTrickleOpenAI    = `{"id":"chatcmpl-trickle","object":"chat.completion","created":1,"model":"gpt-4","choices":[{"index":0,"message":{"role":"assistant","content":"trickled answer"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`
	relTrickleAnthropic = `{"id":"msg_trickle","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"trickled answer"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":2}}`
)

// startTrickle is a raw TCP upstream that answers every request with a valid
// body in the wire format of its path, written one byte every gap: a provider
// on a congested link. It returns its URL; its connections close at cleanup.
func startTrickle(t *testing.T, gap time.Duration) string {
	t.Helper()
	return mock.RawUpstream(t, func(_ context.Context, c net.Conn) {
		r := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			body := relTrickleOpenAI
			if req.URL.Path == "/v1/messages" {
				body = relTrickleAnthropic
			}
			head := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
			if _, err := io.WriteString(c, head); err != nil {
				return
			}
			for i := 0; i < len(body); i++ {
				time.Sleep(gap)
				if _, err := c.Write([]byte{body[i]}); err != nil {
					return
				}
			}
		}
	})
}

// startBlackhole is an upstream that accepts connections and then neither
// reads nor answers; it returns its URL. Its connections close at cleanup.
func startBlackhole(t *testing.T) string {
	t.Helper()
	return mock.RawUpstream(t, func(ctx context.Context, _ net.Conn) { <-ctx.Done() })
}

// closedPort returns the URL of a loopback port nothing listens on: a
// provider process that is down (connection refused).
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "http://" + addr
}

// relCase is one row of the fault matrix.
type relCase struct {
	name   string
	rules  []mock.Rule
	stream bool
	// setup changes the configuration further (an upstream of the test's
	// own, a longer timeout).
	setup func(t *testing.T, c *config.Config)
	// deadline overrides relDeadline.
	deadline time.Duration

	status   int
	provider string       // for a 200: who answered
	end      relStreamEnd // for a 200 stream: how it ended
	openai   fsm.State    // the breakers afterwards
	anthro   fsm.State
	// minAttempts is the least attempts the answer must report (plain
	// answers only; 0: not checked).
	minAttempts int
}

func relRules(provider string, faults ...string) []mock.Rule {
	var rs []mock.Rule
	for _, f := range faults {
		r := mock.Rule{Provider: provider, Fault: f}
		if f == mock.FaultTimeout {
			r.DelayMS = 1000 // well past the attempt timeout
		}
		rs = append(rs, r)
	}
	return rs
}

// relMatrix is the fault matrix: every fault of the mock, on openai alone (the
// route's first target, so the request must fail over to anthropic) and on
// both, plain and streamed, plus the upstreams the mock cannot play.
func relMatrix() []relCase {
	const (
		oa = mock.ProviderOpenAI
		an = "anthropic"
	)
	closed, open := fsm.Closed, fsm.Open
	var cs []relCase
	for _, stream := range []bool{false, true} {
		kind := "plain"
		if stream {
			kind = "stream"
		}
		n := func(s string) string { return s + "/" + kind }
		cs = append(cs,
			// One provider failing: the answer comes from the other. A fault
			// that is retried uses up openai's three attempts, which trips
			// its breaker (threshold 3); a fault that fails over at once is
			// one failure.
			relCase{name: n("timeout/openai"), rules: relRules(oa, mock.FaultTimeout), stream: stream,
				status: 200, provider: an, end: relDone, openai: open, anthro: closed, minAttempts: 4},
			relCase{name: n("rate_limit/openai"), rules: relRules(oa, mock.FaultRateLimit), stream: stream,
				status: 200, provider: an, end: relDone, openai: closed, anthro: closed, minAttempts: 2},
			relCase{name: n("server_error/openai"), rules: relRules(oa, mock.FaultServerError), stream: stream,
				status: 200, provider: an, end: relDone, openai: open, anthro: closed, minAttempts: 4},
			// OpenAI's "overloaded" is a 503 server_error: retried, not failed over.
			relCase{name: n("overloaded/openai"), rules: relRules(oa, mock.FaultOverloaded), stream: stream,
				status: 200, provider: an, end: relDone, openai: open, anthro: closed, minAttempts: 4},
			relCase{name: n("malformed/openai"), rules: relRules(oa, mock.FaultMalformed), stream: stream,
				status: 200, provider: an, end: relDone, openai: open, anthro: closed, minAttempts: 4},
			relCase{name: n("reset/openai"), rules: relRules(oa, mock.FaultReset), stream: stream,
				status: 200, provider: an, end: relDone, openai: closed, anthro: closed, minAttempts: 2},
			relCase{name: n("hang/openai"), rules: relRules(oa, mock.FaultHang), stream: stream,
				status: 200, provider: an, end: relDone, openai: open, anthro: closed, minAttempts: 4},

			// Both failing: the documented error, in time.
			relCase{name: n("timeout/both"), rules: relRules("*", mock.FaultTimeout), stream: stream,
				status: 502, openai: open, anthro: open, minAttempts: 6},
			// Every target 429: one more round after Retry-After (1 s), then
			// 429 since a second wait would cross the 2 s deadline.
			relCase{name: n("rate_limit/both"), rules: relRules("*", mock.FaultRateLimit), stream: stream, deadline: 2 * time.Second,
				status: 429, openai: closed, anthro: closed, minAttempts: 4},
			relCase{name: n("server_error/both"), rules: relRules("*", mock.FaultServerError), stream: stream,
				status: 502, openai: open, anthro: open, minAttempts: 6},
			// Anthropic's 529 fails over, but on the last target it is
			// retried like a transient failure.
			relCase{name: n("overloaded/both"), rules: relRules("*", mock.FaultOverloaded), stream: stream,
				status: 502, openai: open, anthro: open, minAttempts: 6},
			relCase{name: n("malformed/both"), rules: relRules("*", mock.FaultMalformed), stream: stream,
				status: 502, openai: open, anthro: open, minAttempts: 6},
			// A reset fails over at once from openai (one failure) and is
			// retried on the last target.
			relCase{name: n("reset/both"), rules: relRules("*", mock.FaultReset), stream: stream,
				status: 502, openai: closed, anthro: open, minAttempts: 4},
			relCase{name: n("hang/both"), rules: relRules("*", mock.FaultHang), stream: stream,
				status: 502, openai: open, anthro: open, minAttempts: 6},
			// A deadline shorter than the attempts: 504, not a 502. The third
			// attempt is cut short by the deadline, not by the provider, so
			// the breaker counts it as neutral: two failures, still closed.
			relCase{name: n("hang/both/short_deadline"), rules: relRules("*", mock.FaultHang), stream: stream, deadline: 500 * time.Millisecond,
				status: 504, openai: closed, anthro: closed, minAttempts: 3},

			// A provider process that is down: connection refused.
			relCase{name: n("refused/openai"), stream: stream,
				setup:  func(t *testing.T, c *config.Config) { relBaseURL(c, "openai", closedPort(t)) },
				status: 200, provider: an, end: relDone, openai: closed, anthro: closed, minAttempts: 2},
			relCase{name: n("refused/both"), stream: stream,
				setup: func(t *testing.T, c *config.Config) {
					u := closedPort(t)
					relBaseURL(c, "openai", u)
					relBaseURL(c, "anthropic", u)
				},
				status: 502, openai: closed, anthro: open, minAttempts: 4},
			// Accepts the connection, never reads, never answers.
			relCase{name: n("blackhole/openai"), stream: stream,
				setup:  func(t *testing.T, c *config.Config) { relBaseURL(c, "openai", startBlackhole(t)) },
				status: 200, provider: an, end: relDone, openai: open, anthro: closed, minAttempts: 4},
			relCase{name: n("blackhole/both"), stream: stream,
				setup: func(t *testing.T, c *config.Config) {
					u := startBlackhole(t)
					relBaseURL(c, "openai", u)
					relBaseURL(c, "anthropic", u)
				},
				status: 502, openai: open, anthro: open, minAttempts: 6},
		)
	}
	// The faults that only streams see: a plain call skips them, a stream
	// gets its first chunks and then fails, which ends the client's stream
	// with an error event (no failover after the first byte).
	cs = append(cs,
		relCase{name: "stream_cut/plain/openai", rules: relRules(oa, mock.FaultStreamCut),
			status: 200, provider: oa, openai: closed, anthro: closed, minAttempts: 1},
		relCase{name: "stream_stall/plain/openai", rules: relRules(oa, mock.FaultStreamStall),
			status: 200, provider: oa, openai: closed, anthro: closed, minAttempts: 1},
		relCase{name: "stream_cut/stream/openai", rules: relRules(oa, mock.FaultStreamCut), stream: true,
			status: 200, provider: oa, end: relErrorEvent, openai: closed, anthro: closed},
		relCase{name: "stream_stall/stream/openai", rules: relRules(oa, mock.FaultStreamStall), stream: true,
			status: 200, provider: oa, end: relErrorEvent, openai: closed, anthro: closed},
		relCase{name: "stream_cut/stream/both", rules: relRules("*", mock.FaultStreamCut), stream: true,
			status: 200, provider: oa, end: relErrorEvent, openai: closed, anthro: closed},
		relCase{name: "stream_stall/stream/both", rules: relRules("*", mock.FaultStreamStall), stream: true,
			status: 200, provider: oa, end: relErrorEvent, openai: closed, anthro: closed},
		// A stream whose body ends cleanly before the provider's end marker
		// is as truncated as a cut one: an error event, never [DONE].
		relCase{name: "stream_truncate/plain/openai", rules: relRules(oa, mock.FaultStreamTruncate),
			status: 200, provider: oa, openai: closed, anthro: closed, minAttempts: 1},
		relCase{name: "stream_truncate/stream/openai", rules: relRules(oa, mock.FaultStreamTruncate), stream: true,
			status: 200, provider: oa, end: relErrorEvent, openai: closed, anthro: closed},
		relCase{name: "stream_truncate/stream/openai/continuation", rules: relRules(oa, mock.FaultStreamTruncate), stream: true,
			setup:  func(t *testing.T, c *config.Config) { c.Pipeline.Policy.StreamContinuation = true },
			status: 200, provider: oa, end: relDone, openai: closed, anthro: closed},
		// With stream continuation on, a stream cut after its first byte
		// goes on from Anthropic (which continues a prefill): the client
		// sees one clean stream, begun by openai.
		relCase{name: "stream_cut/stream/openai/continuation", rules: relRules(oa, mock.FaultStreamCut), stream: true,
			setup:  func(t *testing.T, c *config.Config) { c.Pipeline.Policy.StreamContinuation = true },
			status: 200, provider: oa, end: relDone, openai: closed, anthro: closed},
		relCase{name: "stream_stall/stream/openai/continuation", rules: relRules(oa, mock.FaultStreamStall), stream: true,
			setup:  func(t *testing.T, c *config.Config) { c.Pipeline.Policy.StreamContinuation = true },
			status: 200, provider: oa, end: relDone, openai: closed, anthro: closed},
		relCase{name: "stream_cut/stream/both/continuation", rules: relRules("*", mock.FaultStreamCut), stream: true,
			setup:  func(t *testing.T, c *config.Config) { c.Pipeline.Policy.StreamContinuation = true },
			status: 200, provider: oa, end: relErrorEvent, openai: closed, anthro: closed},
		// Anthropic first (route claude-3-5-sonnet) for the translated stream.
		relCase{name: "stream_truncate/stream/anthropic_first", rules: relRules(an, mock.FaultStreamTruncate), stream: true,
			status: 200, provider: an, end: relErrorEvent, openai: closed, anthro: closed},
		relCase{name: "stream_cut/stream/anthropic_first", rules: relRules(an, mock.FaultStreamCut), stream: true,
			status: 200, provider: an, end: relErrorEvent, openai: closed, anthro: closed},
	)
	// A body that trickles in one byte at a time: within the attempt
	// timeout it is a success; slower, a timeout like any other.
	cs = append(cs,
		relCase{name: "trickle/within_timeout/openai",
			setup: func(t *testing.T, c *config.Config) {
				// 242 bytes at 2 ms: about 0.5-0.8 s, inside a 1.5 s attempt.
				c.Pipeline.Policy.AttemptTimeout = 1500 * time.Millisecond
				relBaseURL(c, "openai", startTrickle(t, 2*time.Millisecond))
			},
			status: 200, provider: oa, openai: closed, anthro: closed, minAttempts: 1},
		relCase{name: "trickle/too_slow/openai",
			setup: func(t *testing.T, c *config.Config) {
				relBaseURL(c, "openai", startTrickle(t, 5*time.Millisecond))
			},
			status: 200, provider: an, openai: open, anthro: closed, minAttempts: 4},
		relCase{name: "trickle/too_slow/both",
			setup: func(t *testing.T, c *config.Config) {
				u := startTrickle(t, 5*time.Millisecond)
				relBaseURL(c, "openai", u)
				relBaseURL(c, "anthropic", u)
			},
			status: 502, openai: open, anthro: open, minAttempts: 6},
	)
	return cs
}

func TestFaultMatrixAnswersInTimeAndBreakersEndAsDesigned(t *testing.T) {
	for _, tc := range relMatrix() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			deadline := relDeadline
			if tc.deadline > 0 {
				deadline = tc.deadline
			}
			g := startGateway(t, func(c *config.Config) {
				relPolicy(c)
				c.Pipeline.Policy.Deadline = deadline
				if tc.setup != nil {
					tc.setup(t, c)
				}
			})
			for _, r := range tc.rules {
				g.fault(r)
			}
			model := "gpt-4"
			if strings.HasSuffix(tc.name, "anthropic_first") {
				model = "claude-3-5-sonnet"
			}
			a := relDo(strings.TrimPrefix(g.url, "http://"), relRequestBody(model, "matrix "+strings.ReplaceAll(tc.name, "/", " "), tc.stream),
				deadline+5*time.Second, "X-Request-ID", "matrix-1")
			provider, end, err := relCheck(a)
			if err != nil {
				t.Fatalf("%v\n%s", err, g.log.String())
			}
			relInTime(t, a, deadline, tc.stream)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s\n%s", a.status, tc.status, a.body, g.log.String())
			}
			if a.status == 200 && provider != tc.provider {
				t.Errorf("answered by %q, want %q", provider, tc.provider)
			}
			if tc.stream && a.status == 200 && end != tc.end {
				t.Errorf("the stream ended with %d, want %d:\n%s", end, tc.end, a.body)
			}
			// Attempts: in the answer, or for a stream in its header.
			attempts := -1
			if n, err := strconv.Atoi(a.header.Get("X-Gateway-Attempts")); err == nil {
				attempts = n
			} else {
				var body struct{ Attempts *int }
				if json.Unmarshal(a.body, &body) == nil && body.Attempts != nil {
					attempts = *body.Attempts
				}
			}
			if tc.minAttempts > 0 && attempts < tc.minAttempts {
				t.Errorf("%d attempts, want at least %d: %s", attempts, tc.minAttempts, a.body)
			}
			// A stream's end is logged by its writer, after the client has
			// its bytes.
			if g.waitLines("request_id=matrix-1", "machine=request", "to=") == nil {
				t.Fatal("no transition logged")
			}
			relWaitTerminal(t, g, "matrix-1")
			if s := g.srv.Breakers()["openai"].State(); s != tc.openai {
				t.Errorf("openai breaker %s, want %s: %+v", s, tc.openai, g.srv.Breakers()["openai"].Snapshot())
			}
			if s := g.srv.Breakers()["anthropic"].State(); s != tc.anthro {
				t.Errorf("anthropic breaker %s, want %s: %+v", s, tc.anthro, g.srv.Breakers()["anthropic"].Snapshot())
			}
			t.Logf("observed %s: %d provider=%q end=%d attempts=%d first_byte=%s total=%s breakers openai=%s anthropic=%s",
				tc.name, a.status, provider, end, attempts, a.firstByte.Round(time.Millisecond), a.total.Round(time.Millisecond),
				g.srv.Breakers()["openai"].State(), g.srv.Breakers()["anthropic"].State())
			if t.Failed() {
				t.Logf("journal:\n%s", g.log.String())
			}
		})
	}
}

// relWaitTerminal waits until the request id has a terminal transition in
// the journal.
func relWaitTerminal(t *testing.T, g *gateway, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if len(g.lines("request_id="+id+" ", "to=succeeded")) > 0 || len(g.lines("request_id="+id+" ", "to=failed")) > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("request %s never ended:\n%s", id, g.log.String())
}

// relFreeAddr returns a loopback address that was free a moment ago, for a
// provider that must come back on the same port.
func relFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// relRestartable is the mock as a provider process that can be killed and
// started again on the same port.
type relRestartable struct {
	t    *testing.T
	addr string
	mu   sync.Mutex
	m    *mock.Server
}

func (r *relRestartable) start() {
	r.t.Helper()
	m := mock.New(mock.Config{Latency: 5 * time.Millisecond})
	var err error
	for i := 0; i < 100; i++ { // the port may linger for a moment
		if _, err = m.Start(r.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatalf("restart on %s: %v", r.addr, err)
	}
	r.mu.Lock()
	r.m = m
	r.mu.Unlock()
}

func (r *relRestartable) kill() {
	r.mu.Lock()
	m := r.m
	r.m = nil
	r.mu.Unlock()
	if m != nil {
		_ = m.Close()
	}
}

// relLoad sends requests from workers until stop is closed and collects
// every answer: each must be well-formed, in time, with a documented status.
type relLoad struct {
	mu       sync.Mutex
	statuses map[int]int
	by       map[string]int // 200s by provider
	errs     []string
	sent     atomic.Int64
	answered atomic.Int64
	// okAfter counts 200s from each provider since mark was set.
	mark    atomic.Bool
	okAfter map[string]int
}

func runRelLoad(addr string, workers int, models []string, deadline time.Duration, stop <-chan struct{}) (*relLoad, *sync.WaitGroup) {
	l := &relLoad{statuses: map[int]int{}, by: map[string]int{}, okAfter: map[string]int{}}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := l.sent.Add(1)
				model := models[int(n)%len(models)]
				stream := n%3 == 0
				a := relDo(addr, relRequestBody(model, "restart "+strconv.FormatInt(n, 10), stream), deadline+5*time.Second,
					"X-Request-ID", "restart-"+strconv.FormatInt(n, 10))
				provider, _, err := relCheck(a)
				if err == nil && (a.firstByte > deadline+relSlack || (!stream && a.total > deadline+relSlack)) {
					err = fmt.Errorf("answer after %s/%s, past the deadline", a.firstByte, a.total)
				}
				l.answered.Add(1)
				l.mu.Lock()
				l.statuses[a.status]++
				if err != nil {
					l.errs = append(l.errs, fmt.Sprintf("request %d: %v", n, err))
				}
				if a.status == 200 {
					l.by[provider]++
					if l.mark.Load() {
						l.okAfter[provider]++
					}
				}
				l.mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	return l, &wg
}

// relEventually polls cond every 10 ms up to limit.
func relEventually(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

// relRestartDeadline is the deadline of the restart tests.
const relRestartDeadline = 3 * time.Second

// relRestartPolicy is relPolicy for the tests where a provider process dies:
// their subject is the death, not slowness, so the attempt timeout is long
// enough that a CI machine starved of CPU does not add timeouts of its own
// (and trip the surviving provider's breaker). The breaker opens after 5
// failures and probes after 200 ms.
func relRestartPolicy(c *config.Config) {
	relPolicy(c)
	c.Pipeline.Policy.AttemptTimeout = time.Second
	c.Pipeline.Policy.FirstTokenTimeout = time.Second
	c.Pipeline.Policy.Deadline = relRestartDeadline
	c.Providers.Breaker.FailureThreshold = 5
	c.Providers.Breaker.OpenTimeout = 200 * time.Millisecond
}

func TestProviderKilledAndRestartedMidRun(t *testing.T) {
	for _, tc := range []struct {
		name string
		both bool // both providers on the process that dies
	}{
		{"one_provider", false},
		{"both_providers", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &relRestartable{t: t, addr: relFreeAddr(t)}
			r.start()
			t.Cleanup(r.kill)
			g := startGateway(t, func(c *config.Config) {
				relRestartPolicy(c)
				relBaseURL(c, "openai", "http://"+r.addr)
				if tc.both {
					relBaseURL(c, "anthropic", "http://"+r.addr)
				}
			})
			stop := make(chan struct{})
			load, wg := runRelLoad(strings.TrimPrefix(g.url, "http://"), 4, []string{"gpt-4", "claude-3-5-sonnet"}, relRestartDeadline, stop)
			defer func() {
				select {
				case <-stop:
				default:
					close(stop)
				}
				wg.Wait()
			}()
			up := func(n int64) bool {
				return relEventually(5*time.Second, func() bool { return load.answered.Load() >= n })
			}
			if !up(20) {
				t.Fatal("no traffic")
			}
			r.kill()
			killedAt := load.answered.Load()
			if !up(killedAt + 40) {
				t.Fatal("no answers while the provider was down")
			}
			r.start()
			load.mark.Store(true)
			// After the restart (and the breakers' open_timeout) the revived
			// process serves again, each provider through its probe.
			want := []string{"openai"}
			if tc.both {
				want = append(want, "anthropic")
			}
			ok := relEventually(5*time.Second, func() bool {
				load.mu.Lock()
				defer load.mu.Unlock()
				for _, p := range want {
					if load.okAfter[p] < 3 {
						return false
					}
				}
				return true
			})
			close(stop)
			wg.Wait()
			load.mu.Lock()
			defer load.mu.Unlock()
			t.Logf("sent %d, answered %d, statuses %v, 200s by provider %v, after restart %v",
				load.sent.Load(), load.answered.Load(), load.statuses, load.by, load.okAfter)
			if load.sent.Load() != load.answered.Load() {
				t.Errorf("%d requests sent, %d answered", load.sent.Load(), load.answered.Load())
			}
			for _, e := range load.errs {
				t.Error(e)
			}
			if !ok {
				t.Errorf("the restarted provider did not serve again: %v", load.okAfter)
			}
			if !tc.both && len(load.statuses) != 1 {
				// The other provider was up the whole time: nothing but 200.
				t.Errorf("with one provider down every request must succeed: %v\nanthropic failures: %v\nbreaker lines: %v", load.statuses,
					relHead(g.lines("action=failed", "provider=anthropic"), 10), relHead(g.lines("machine=breaker"), 20))
			}
			for _, p := range want {
				if s := g.srv.Breakers()[p].State(); s != fsm.Closed {
					t.Errorf("%s breaker ends %s, want closed after recovery", p, s)
				}
			}
		})
	}
}

// TestProviderProcessKilledWithSIGKILLMidRequest runs the mock-provider binary
// as the OpenAI upstream and kills it with SIGKILL while requests are in
// flight: those get their connections cut, not a graceful close. Anthropic
// stays up, so every client request must still succeed; the restarted process
// (same port) serves again once openai's breaker probes.
func TestProviderProcessKilledWithSIGKILLMidRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the mock-provider binary")
	}
	bin := relBuildMock(t)
	addr := relFreeAddr(t)
	var proc *exec.Cmd
	startProc := func() {
		t.Helper()
		for i := 0; i < 50; i++ {
			proc = exec.Command(bin, "-listen", addr, "-latency", "40ms")
			proc.Stderr = io.Discard
			if err := proc.Start(); err != nil {
				t.Fatal(err)
			}
			if relEventually(3*time.Second, func() bool {
				c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
				if err == nil {
					_ = c.Close()
				}
				return err == nil
			}) {
				return
			}
			_ = proc.Process.Kill()
			_ = proc.Wait()
		}
		t.Fatal("mock-provider did not start")
	}
	killProc := func() {
		if proc != nil && proc.Process != nil {
			_ = proc.Process.Signal(syscall.SIGKILL)
			_ = proc.Wait()
		}
	}
	startProc()
	t.Cleanup(killProc)
	g := startGateway(t, func(c *config.Config) {
		relRestartPolicy(c)
		relBaseURL(c, "openai", "http://"+addr)
	})
	stop := make(chan struct{})
	load, wg := runRelLoad(strings.TrimPrefix(g.url, "http://"), 8, []string{"gpt-4"}, relRestartDeadline, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	if !relEventually(5*time.Second, func() bool { return load.answered.Load() >= 40 }) {
		t.Fatal("no traffic")
	}
	killProc() // with 8 workers and 40 ms latency, some calls are in flight
	n := load.answered.Load()
	relEventually(5*time.Second, func() bool { return load.answered.Load() >= n+40 })
	startProc()
	load.mark.Store(true)
	ok := relEventually(5*time.Second, func() bool {
		load.mu.Lock()
		defer load.mu.Unlock()
		return load.okAfter["openai"] >= 3
	})
	close(stop)
	wg.Wait()
	load.mu.Lock()
	defer load.mu.Unlock()
	// The calls in flight when the process died were cut (not refused: the
	// breaker opens before the next ones are made).
	failed := g.lines("action=failed", "provider=openai")
	cut := 0
	for _, l := range failed {
		if !strings.Contains(l, "refused") {
			cut++
		}
	}
	t.Logf("sent %d, answered %d, statuses %v, 200s by provider %v; openai failures by class %v, %d of them calls in flight cut by the kill",
		load.sent.Load(), load.answered.Load(), load.statuses, load.by, relClasses(failed), cut)
	for _, e := range load.errs {
		t.Error(e)
	}
	if load.statuses[200] != int(load.answered.Load()) {
		t.Errorf("with anthropic up every request must succeed: %v\nanthropic failures: %v\nbreaker lines: %v", load.statuses,
			relHead(g.lines("action=failed", "provider=anthropic"), 10), relHead(g.lines("machine=breaker"), 20))
	}
	if !ok {
		t.Errorf("the restarted process did not serve again")
	}
	if cut == 0 {
		t.Errorf("no call in flight was cut: the kill did not hit a request (%d failures)", len(failed))
	}
	if s := g.srv.Breakers()["openai"].State(); s != fsm.Closed {
		t.Errorf("openai breaker ends %s, want closed", s)
	}
}

func relBuildMock(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "mock-provider")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/llm-gateway/gateway/cmd/mock-provider")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out.String())
	}
	return bin
}

// TestShutdownClosesUpstreamConnections: once the server has shut down, the
// connections it opened to its providers are closed too. New builds the
// provider adapters and their keep-alive pools; nothing else can close them.
func TestShutdownClosesUpstreamConnections(t *testing.T) {
	var upstream string // the mock's port
	t.Run("serve", func(t *testing.T) {
		g := startGateway(t, func(c *config.Config) {
			_, upstream, _ = strings.Cut(strings.TrimPrefix(c.Providers.Providers["openai"].BaseURL, "http://"), ":")
		})
		// Eight requests at once leave eight pooled upstream connections.
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if a := relDo(strings.TrimPrefix(g.url, "http://"), hello, 5*time.Second); a.status != 200 {
					t.Errorf("got %d %s", a.status, a.body)
				}
			}()
		}
		wg.Wait()
		if n := len(relSocketsTo(upstream)); n == 0 {
			t.Fatal("no upstream connection to check")
		}
	}) // the gateway shut down and the mock closed here
	if !relEventually(2*time.Second, func() bool { return len(relSocketsTo(upstream)) == 0 }) {
		t.Errorf("after Shutdown the gateway still holds %d connection(s) to its provider (port %s), closed only by the pool's idle timeout (providers.idle_conn_timeout, 30s): %v",
			len(relSocketsTo(upstream)), upstream, relSocketsTo(upstream))
	}
}

// relSocketsTo lists this process's TCP sockets connected to port.
func relSocketsTo(port string) []string {
	var out []string
	for _, s := range loadSockets() {
		if strings.HasSuffix(s, "->:"+port) {
			out = append(out, s)
		}
	}
	return out
}

// startRawUpstream is a loopback upstream that answers each request with the
// raw HTTP answer answer returns for it, then closes the connection.
func startRawUpstream(t *testing.T, answer func(r *http.Request) string) string {
	t.Helper()
	return mock.RawUpstream(t, func(_ context.Context, c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		_, _ = io.WriteString(c, answer(req))
	})
}

// TestUpstreamTextThatIsNotUTF8NeverReachesTheClient: an OpenAI answer whose
// text is not valid UTF-8 (a proxy that mangles encodings, a truncated
// multi-byte character) parses — encoding/json lets invalid bytes through —
// but the gateway's answer must still be valid UTF-8 JSON (RFC 8259 §8.1):
// clients such as Python's json module refuse anything else. The answer may
// be the provider's text with the bytes replaced, or the other provider's
// after the body counted as malformed; it must not be the raw bytes.
func TestUpstreamTextThatIsNotUTF8NeverReachesTheClient(t *testing.T) {
	const bad = "caf\xe9 \xff\xfe"
	up := func(r *http.Request) string {
		if strings.Contains(r.Header.Get("Accept"), "event-stream") { // both adapters ask for streams so
			body := "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"" + bad + "\"},\"finish_reason\":null}]}\n\n" +
				"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"
			return "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n" + body
		}
		body := `{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"` + bad + `"},"finish_reason":"stop"}]}`
		return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body
	}
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "stream"}[stream], func(t *testing.T) {
			g := startGateway(t, func(c *config.Config) {
				relPolicy(c)
				relBaseURL(c, "openai", startRawUpstream(t, up))
			})
			a := relDo(strings.TrimPrefix(g.url, "http://"), relRequestBody("gpt-4", "encoding", stream), 10*time.Second)
			if _, _, err := relCheck(a); err != nil {
				t.Fatal(err)
			}
			if !utf8.Valid(a.body) {
				t.Errorf("the answer (%d, from %s) is not valid UTF-8: %q", a.status, a.header.Get("X-Gateway-Provider"), a.body)
			}
		})
	}
}

// relHead returns the first n lines.
func relHead(lines []string, n int) []string {
	if len(lines) > n {
		return lines[:n]
	}
	return lines
}

// relClasses counts journal lines by their error= field.
func relClasses(lines []string) map[string]int {
	out := map[string]int{}
	for _, l := range lines {
		for _, f := range strings.Fields(l) {
			if v, ok := strings.CutPrefix(f, "error="); ok {
				out[v]++
			}
		}
	}
	return out
}

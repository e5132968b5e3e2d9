package pipeline_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/valyala/fasthttp"

	"github.com/llm-gateway/gateway/mock"
	"github.com/llm-gateway/gateway/pipeline/config"
)

func streamParams(text string, includeUsage bool) openai.ChatCompletionNewParams {
	p := openai.ChatCompletionNewParams{
		Model:    "gpt-4",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(text)},
	}
	if includeUsage {
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	}
	return p
}

// collect reads a whole SDK stream: the text, the finish reason, the usage
// and the error that ended it.
func collect(s interface {
	Next() bool
	Current() openai.ChatCompletionChunk
	Err() error
}) (text, finish string, usage int64, chunks int, err error) {
	for s.Next() {
		c := s.Current()
		chunks++
		for _, ch := range c.Choices {
			text += ch.Delta.Content
			if ch.FinishReason != "" {
				finish = ch.FinishReason
			}
		}
		if c.Usage.TotalTokens > 0 {
			usage = c.Usage.TotalTokens
		}
	}
	return text, finish, usage, chunks, s.Err()
}

func TestStreamThroughTheGatewayFromBothProviders(t *testing.T) {
	g := startGateway(t, nil)
	c := sdkClient(g)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, provider := range []string{"openai", "anthropic"} {
		t.Run(provider, func(t *testing.T) {
			if provider == "anthropic" {
				// A 429 before the first byte: the stream fails over.
				g.fault(mock.Rule{Provider: "openai", Fault: mock.FaultRateLimit, Count: 1})
			}
			text, finish, usage, chunks, err := collect(c.Chat.Completions.NewStreaming(ctx, streamParams("stream me please", true)))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(text, "stream me please") || finish != "stop" || usage == 0 || chunks < 3 {
				t.Fatalf("text %q finish %q usage %d chunks %d", text, finish, usage, chunks)
			}
		})
	}
	lines := g.waitLines("action=success", "provider=anthropic")
	if len(lines) != 1 {
		t.Fatalf("the anthropic stream's success was not logged once: %v", lines)
	}
}

// rawStream posts a streamed request and returns the raw SSE body.
func rawStream(t *testing.T, g *gateway, body string) string {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = conn.Write([]byte("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: " +
		itoa(len(body)) + "\r\n\r\n" + body))
	var sb strings.Builder
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		sb.WriteString(line)
		if err != nil {
			break
		}
	}
	return sb.String()
}

func TestStreamWithoutUsageEndsWithDone(t *testing.T) {
	g := startGateway(t, nil)
	g.fault(mock.Rule{Provider: "openai", Fault: mock.FaultRateLimit, Count: 1})
	out := rawStream(t, g, `{"model":"gpt-4","stream":true,"messages":[{"role":"user","content":"one two three"}]}`)
	if !strings.Contains(out, "text/event-stream") || !strings.Contains(out, "data: [DONE]") {
		t.Fatalf("no clean SSE end:\n%s", out)
	}
	if strings.Contains(out, `"usage":{`) {
		t.Fatalf("usage sent without include_usage:\n%s", out)
	}
}

func TestStreamCutAfterTheFirstByteEndsWithAnErrorEvent(t *testing.T) {
	g := startGateway(t, nil)
	g.fault(mock.Rule{Provider: "openai", Fault: mock.FaultStreamCut, Count: 1})
	c := sdkClient(g)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	text, _, _, chunks, err := collect(c.Chat.Completions.NewStreaming(ctx, streamParams("a long answer that will be cut in the middle", false)))
	if err == nil {
		t.Fatalf("a cut stream ended cleanly after %d chunks: %q", chunks, text)
	}
	if !strings.Contains(err.Error(), "upstream") {
		t.Fatalf("error %v does not explain the cut", err)
	}
	out := rawStream(t, g, `{"model":"gpt-4","stream":true,"messages":[{"role":"user","content":"fine now"}]}`)
	if !strings.Contains(out, "data: [DONE]") {
		t.Fatalf("the next stream must be clean:\n%s", out)
	}
	gave := g.waitLines("action=gave_up", "reason=stream_failed")
	if len(gave) != 1 || !strings.Contains(gave[0], "provider=openai") {
		t.Fatalf("the cut was not logged as give_up: %v\n%s", gave, g.log.String())
	}
	if s := g.srv.Breakers()["openai"].Snapshot(); s.Failures != 1 {
		t.Fatalf("the breaker did not count the cut: %+v", s)
	}
}

func TestStreamThatStallsPastTheIdleLimitEndsWithAnErrorEvent(t *testing.T) {
	g := startGateway(t, func(c *config.Config) { c.Pipeline.Policy.StreamIdleTimeout = 200 * time.Millisecond })
	g.fault(mock.Rule{Provider: "openai", Fault: mock.FaultStreamStall, Count: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := sdkClient(g)
	_, _, _, chunks, err := collect(c.Chat.Completions.NewStreaming(ctx, streamParams("this stream will stall halfway through", false)))
	if err == nil || chunks == 0 {
		t.Fatalf("a stalled stream must end with an error after its first chunks; chunks %d err %v", chunks, err)
	}
	gave := g.waitLines("action=gave_up", "reason=stream_failed")
	if len(gave) != 1 || !strings.Contains(gave[0], "error=timeout") {
		t.Fatalf("the stall was not logged as a timeout give_up: %v", gave)
	}
}

func TestClientThatLeavesMidStreamCancelsTheUpstream(t *testing.T) {
	g := startGateway(t, nil)
	conn, _ := stalledStream(t, g, "walker")
	start := time.Now()
	_ = conn.Close()
	gave := g.waitLines("request_id=walker", "action=gave_up")
	if len(gave) != 1 || !strings.Contains(gave[0], "status=499") {
		t.Fatalf("the abandoned stream did not end as client_gone: %v\n%s", gave, g.log.String())
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("the upstream was held %s after the client left", time.Since(start))
	}
	if s := g.srv.Breakers()["openai"].Snapshot(); s.Failures != 0 {
		t.Fatalf("a client leaving must not count against the provider: %+v", s)
	}
}

func TestStreamContinuationJoinsACutStreamOnTheNextTarget(t *testing.T) {
	g := startGateway(t, func(c *config.Config) { c.Pipeline.Policy.StreamContinuation = true })
	g.fault(mock.Rule{Provider: "openai", Fault: mock.FaultStreamCut, Count: 1})
	c := sdkClient(g)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := "please tell me a rather long story about seven brave dwarves"
	s := c.Chat.Completions.NewStreaming(ctx, streamParams(msg, false))
	var text string
	ids := map[string]bool{}
	for s.Next() {
		ch := s.Current()
		ids[ch.ID] = true
		for _, choice := range ch.Choices {
			text += choice.Delta.Content
		}
	}
	if err := s.Err(); err != nil {
		t.Fatalf("the continued stream failed: %v (text so far %q)", err, text)
	}
	if text != "Mock reply to: "+msg {
		t.Fatalf("the joined answer is not seamless: %q", text)
	}
	if len(ids) != 1 {
		t.Fatalf("the client saw %d chunk ids, want one stream: %v", len(ids), ids)
	}
	joined := g.waitLines("action=joined", "provider=anthropic", "from_provider=openai")
	if len(joined) != 1 {
		t.Fatalf("the join is not marked in the log: %v", g.lines("request_id="))
	}
	// The cut attempt's failure is timed from the attempt's start.
	if failed := g.lines("action=failed", "provider=openai"); len(failed) != 1 || strings.Contains(failed[0], "latency=0s") {
		t.Fatalf("the cut's failed line: %v", failed)
	}
	if st := g.mock.Stats(); st.Outcome("openai", mock.FaultStreamCut) != 1 || st.Outcome("anthropic", mock.OutcomeOK) != 1 {
		t.Fatalf("mock stats %+v", st)
	}
	prefill := g.mock.Log()[1].Body
	if !strings.Contains(prefill, `"role":"assistant"`) || !strings.Contains(prefill, "Mock reply to:") {
		t.Fatalf("the continuation did not carry the text so far as a prefill: %s", prefill)
	}
}

func TestStreamContinuationIsOffByDefault(t *testing.T) {
	g := startGateway(t, nil)
	g.fault(mock.Rule{Provider: "openai", Fault: mock.FaultStreamCut, Count: 1})
	out := rawStream(t, g, `{"model":"gpt-4","stream":true,"messages":[{"role":"user","content":"one two three four five six"}]}`)
	if !strings.Contains(out, `"error"`) || g.mock.Stats().Requests("anthropic") != 0 {
		t.Fatalf("without the switch a cut stream must end with an error and no continuation:\n%s", out)
	}
}

// truncatedStreams serves streams that end before the provider's own end
// ([DONE] for OpenAI, message_stop for Anthropic): after a role chunk and
// one text chunk the body ends, cleanly framed ("chunked": the chunked
// terminator) or by closing a connection that has no length ("close"). The
// request's last message names the framing.
func truncatedStreams(t *testing.T) string {
	openaiEvents := `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n" +
		`data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"part1"},"finish_reason":null}]}` + "\n\n"
	anthropicEvents := "event: message_start\n" + `data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-3-5-sonnet-20241022","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":1}}}` + "\n\n" +
		"event: content_block_start\n" + `data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}` + "\n\n" +
		"event: content_block_delta\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"part1"}}` + "\n\n"
	return mock.RawUpstream(t, func(_ context.Context, c net.Conn) {
		r := bufio.NewReader(c)
		for {
			var req fasthttp.Request
			if err := req.Read(r); err != nil {
				return
			}
			events := openaiEvents
			if string(req.URI().Path()) == "/v1/messages" {
				events = anthropicEvents
			}
			if bytes.Contains(req.Body(), []byte("close")) {
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"+events)
				return
			}
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(events), events); err != nil {
				return
			}
		}
	})
}

// A stream whose body ends before the provider's end marker is a truncated
// answer, however cleanly its body ends: the client gets an error event, not
// [DONE]; the journal a give_up; the breaker a failure.
func TestStreamThatEndsBeforeItsEndMarkerIsAFailure(t *testing.T) {
	up := truncatedStreams(t)
	g := startGateway(t, func(c *config.Config) {
		relBaseURL(c, "openai", up)
		relBaseURL(c, "anthropic", up)
	})
	for _, model := range []string{"gpt-4", "claude-3-5-sonnet"} {
		for _, framing := range []string{"chunked", "close"} {
			out := rawStream(t, g, `{"model":"`+model+`","stream":true,"messages":[{"role":"user","content":"`+framing+`"}]}`)
			if !strings.Contains(out, "part1") || strings.Contains(out, "[DONE]") ||
				!strings.Contains(out, `"code":"upstream_server"},"request_id":"req_`) || !strings.Contains(out, "ended early") {
				t.Fatalf("%s, %s: a truncated stream was not ended with an error event:\n%s", model, framing, out)
			}
		}
	}
	if gave := g.waitLines("action=gave_up", "reason=stream_failed"); len(gave) != 4 {
		t.Fatalf("give_up lines %d, want 4:\n%s", len(gave), g.log.String())
	}
	if succ := g.lines("action=success"); len(succ) != 0 {
		t.Fatalf("a truncated stream was logged as a success: %v", succ)
	}
	for _, p := range []string{"openai", "anthropic"} {
		if s := g.srv.Breakers()[p].Snapshot(); s.Failures != 2 {
			t.Fatalf("%s: the breaker counted %d failures, want 2: %+v", p, s.Failures, s)
		}
	}
}

// An OpenAI event sent as several data lines (legal SSE: the lines are
// joined with a line feed) reaches the client as the same event.
func TestStreamEventOnSeveralDataLinesIsForwardedWhole(t *testing.T) {
	events := "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\n" +
		"data: \"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"one \"},\"finish_reason\":null}]}\n\n" +
		"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\n" +
		"data:\n" +
		"data: \"choices\":[{\"index\":0,\"delta\":{\"content\":\"two\"},\"finish_reason\":\"stop\"}]}\n\n" +
		"data: [DONE]\n\n"
	up := mock.RawUpstream(t, func(_ context.Context, c net.Conn) {
		r := bufio.NewReader(c)
		for {
			var req fasthttp.Request
			if err := req.Read(r); err != nil {
				return
			}
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n%s", len(events), events); err != nil {
				return
			}
		}
	})
	g := startGateway(t, func(c *config.Config) { relBaseURL(c, "openai", up) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := sdkClient(g)
	text, finish, _, _, err := collect(c.Chat.Completions.NewStreaming(ctx, streamParams("hi", false)))
	if err != nil || text != "one two" || finish != "stop" {
		t.Fatalf("text %q, finish %q, error %v\n%s", text, finish, err, rawStream(t, g, `{"model":"gpt-4","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	}
}

// A drain that runs out with a stream still flowing ends it with an error
// event (never a cut that an SDK could take for a whole answer) and a
// give_up, so the journal replays with no journey unfinished.
func TestDrainThatRunsOutEndsAFlowingStreamWithAnErrorEvent(t *testing.T) {
	g := startGateway(t, nil)
	_, r := stalledStream(t, g, "at-shutdown")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := g.srv.Shutdown(ctx); err == nil {
		t.Fatal("the drain reported success with a stream still flowing")
	}
	// The connection stays open (this process goes on): read up to the
	// stream's last event.
	var rest strings.Builder
	for !strings.Contains(rest.String(), "gateway_shutting_down") && !strings.Contains(rest.String(), "[DONE]") {
		line, err := r.ReadString('\n')
		rest.WriteString(line)
		if err != nil {
			t.Fatalf("the stream ended without its error event (%v):\n%s", err, rest.String())
		}
	}
	if !strings.Contains(rest.String(), `"code":"gateway_shutting_down"`) || !strings.Contains(rest.String(), `"request_id":"at-shutdown"`) ||
		strings.Contains(rest.String(), "[DONE]") {
		t.Fatalf("the rest of the stream:\n%s", rest.String())
	}
	gave := g.lines("request_id=at-shutdown", "action=gave_up")
	if len(gave) != 1 || !strings.Contains(gave[0], "status=503") || !strings.Contains(gave[0], "reason=shutdown") {
		t.Fatalf("give_up %v\n%s", gave, g.log.String())
	}
	if s := g.srv.Breakers()["openai"].Snapshot(); s.Failures != 0 {
		t.Fatalf("a shutdown must not count against the provider: %+v", s)
	}
	// The cleanup replays the journal: no journey may be left unfinished.
}

// stalledStream opens a stream that the mock stalls after its first chunks,
// as request id, and reads it up to its first chunk. The connection is
// closed at the test's end.
func stalledStream(t *testing.T, g *gateway, id string) (net.Conn, *bufio.Reader) {
	t.Helper()
	g.fault(mock.Rule{Provider: "openai", Fault: mock.FaultStreamStall, Count: 1})
	conn, err := net.Dial("tcp", g.addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	body := `{"model":"gpt-4","stream":true,"messages":[{"role":"user","content":"a stream that stalls halfway"}]}`
	_, _ = conn.Write([]byte("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Request-ID: " + id + "\r\nContent-Type: application/json\r\nContent-Length: " +
		itoa(len(body)) + "\r\n\r\n" + body))
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("no first chunk: %v", err)
		}
		if strings.HasPrefix(line, "data: {") {
			return conn, r
		}
	}
}

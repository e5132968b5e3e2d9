package mock

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Anthropic Messages: POST /v1/messages, as WIRE.md describes — the handler,
// the answers, the stream and the errors.

// anShuttingDown answers a request whose wait Close cut short.
var anShuttingDown = &anError{fasthttp.StatusServiceUnavailable, "api_error", "The server is shutting down"}

// serveAnthropic answers POST /v1/messages.
func (s *Server) serveAnthropic(ctx *fasthttp.RequestCtx) {
	rid := "req_" + s.ids.next()
	ctx.Response.Header.Set("request-id", rid)
	if !ctx.IsPost() {
		s.record(ctx, anthropic, outcomeInvalid, "", false)
		anWriteError(ctx, rid, &anError{fasthttp.StatusMethodNotAllowed, "invalid_request_error",
			fmt.Sprintf("Method %s not allowed for /v1/messages", ctx.Method())})
		return
	}
	if e := s.anAuth(ctx); e != nil {
		s.record(ctx, anthropic, outcomeAuth, "", false)
		anWriteError(ctx, rid, e)
		return
	}
	var req *anRequest
	e := anVersion(ctx.Request.Header.Peek("anthropic-version"))
	if e == nil {
		req, e = anDecode(ctx.Request.Body())
	}
	if e == nil && strings.HasPrefix(*req.Model, unknownModelPrefix) {
		e = &anError{fasthttp.StatusNotFound, "not_found_error", "model: " + *req.Model}
	}
	if e != nil {
		model, streamed := "", false
		if req != nil && req.Model != nil {
			model, streamed = *req.Model, req.stream()
		}
		s.record(ctx, anthropic, outcomeInvalid, model, streamed)
		anWriteError(ctx, rid, e)
		return
	}
	rule, faulted := s.takeFault(ctx, anthropic, *req.Model, req.stream())
	p := req.prompt()
	if faulted {
		switch rule.Fault {
		case FaultTimeout:
			if !s.wait(time.Duration(rule.DelayMS) * time.Millisecond) {
				anWriteError(ctx, rid, anShuttingDown)
				return
			}
			s.anAnswer(ctx, req, &p, "")
		case FaultRateLimit:
			setRetryAfter(ctx, rule.RetryAfterS)
			anSetRateLimit(ctx, 0, time.Now().Add(time.Duration(rule.RetryAfterS)*time.Second).UTC().Format(time.RFC3339), 0)
			anWriteError(ctx, rid, &anError{fasthttp.StatusTooManyRequests, "rate_limit_error",
				fmt.Sprintf("This request would exceed the rate limit for your organization of %d requests per minute. Please try again in %d seconds.", anRequestLimit, rule.RetryAfterS)})
		case FaultServerError:
			anWriteError(ctx, rid, anStatusError(rule.Status))
		case FaultOverloaded:
			anWriteError(ctx, rid, &anError{529, "overloaded_error", "Overloaded"})
		case FaultMalformed, FaultStreamCut, FaultStreamStall, FaultStreamTruncate:
			if !s.wait(s.latency()) {
				anWriteError(ctx, rid, anShuttingDown)
				return
			}
			s.anAnswer(ctx, req, &p, rule.Fault)
		case FaultReset:
			s.hijackReset(ctx)
		case FaultHang:
			s.hijackHang(ctx)
		}
		return
	}
	if !s.wait(s.latency()) {
		anWriteError(ctx, rid, anShuttingDown)
		return
	}
	s.anAnswer(ctx, req, &p, "")
}

// anAnswer writes the reply, whole or streamed; fault FaultMalformed breaks
// its body and FaultStreamCut cuts its stream.
func (s *Server) anAnswer(ctx *fasthttp.RequestCtx, req *anRequest, p *prompt, fault string) {
	r := compose(p)
	a := anAnswerData{id: "msg_" + s.ids.next(), model: *req.Model, r: &r}
	if r.finish == finishTool {
		a.toolID = "toolu_" + s.ids.next()
	}
	anSetRateLimit(ctx, anRequestLimit-1, resetIn1s(), r.inputTokens+r.outputTokens)
	if req.stream() {
		s.sendStream(ctx, a.renderStream(), fault)
		return
	}
	sendBody(ctx, a.render, fault)
}

type anAnswerData struct {
	id, model string
	toolID    string
	r         *reply
}

func (a *anAnswerData) stopReason() string {
	switch a.r.finish {
	case finishLength:
		return "max_tokens"
	case finishStop:
		return "stop_sequence"
	case finishTool:
		return "tool_use"
	case finishRefusal:
		return "refusal"
	}
	return "end_turn"
}

// block appends the content block; empty leaves the text or input empty, for
// content_block_start.
func (a *anAnswerData) block(b []byte, empty bool) []byte {
	if a.r.finish == finishTool {
		b = append(b, `{"type":"tool_use","id":`...)
		b = appendString(b, a.toolID)
		b = append(b, `,"name":`...)
		b = appendString(b, a.r.toolName)
		b = append(b, `,"input":`...)
		if empty {
			b = append(b, `{}`...)
		} else {
			b = append(b, a.r.toolArgs...)
		}
		return append(b, '}')
	}
	b = append(b, `{"type":"text","text":`...)
	if empty {
		b = append(b, `""`...)
	} else {
		b = appendString(b, a.r.text)
	}
	return append(b, '}')
}

// message appends the message object; start renders it as message_start
// carries it (no content yet, no stop reason, one output token).
func (a *anAnswerData) message(b []byte, start bool) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, a.id)
	b = append(b, `,"type":"message","role":"assistant","model":`...)
	b = appendString(b, a.model)
	b = append(b, `,"content":[`...)
	if !start {
		b = a.block(b, false)
	}
	b = append(b, `],"stop_reason":`...)
	if start {
		b = append(b, `null,"stop_sequence":null`...)
	} else {
		b = appendString(b, a.stopReason())
		b = append(b, `,"stop_sequence":`...)
		b = appendNullableString(b, a.r.stopSequence)
	}
	b = append(b, `,"usage":{"input_tokens":`...)
	b = appendInt(b, a.r.inputTokens)
	b = append(b, `,"output_tokens":`...)
	if start {
		b = append(b, '1')
	} else {
		b = appendInt(b, a.r.outputTokens)
	}
	return append(b, `}}`...)
}

func (a *anAnswerData) render(b []byte) []byte { return a.message(b, false) }

// renderStream renders the event stream, from message_start to message_stop.
func (a *anAnswerData) renderStream() *events {
	ev := &events{b: make([]byte, 0, 1024+160*(countWords(a.r.text)+2))}
	event := func(name string, data func(b []byte) []byte) {
		b := append(ev.b, "event: "...)
		b = append(b, name...)
		b = append(b, "\ndata: "...)
		b = data(b)
		ev.b = append(b, "\n\n"...)
		ev.mark()
	}
	event("message_start", func(b []byte) []byte {
		b = append(b, `{"type":"message_start","message":`...)
		return append(a.message(b, true), '}')
	})
	event("content_block_start", func(b []byte) []byte {
		b = append(b, `{"type":"content_block_start","index":0,"content_block":`...)
		return append(a.block(b, true), '}')
	})
	event("ping", func(b []byte) []byte { return append(b, `{"type":"ping"}`...) })
	if a.r.finish == finishTool {
		for _, piece := range halves(a.r.toolArgs) {
			event("content_block_delta", func(b []byte) []byte {
				b = append(b, `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":`...)
				return append(appendString(b, piece), `}}`...)
			})
		}
	} else {
		for _, piece := range pieces(a.r.text) {
			event("content_block_delta", func(b []byte) []byte {
				b = append(b, `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":`...)
				return append(appendString(b, piece), `}}`...)
			})
		}
	}
	event("content_block_stop", func(b []byte) []byte { return append(b, `{"type":"content_block_stop","index":0}`...) })
	event("message_delta", func(b []byte) []byte {
		b = append(b, `{"type":"message_delta","delta":{"stop_reason":`...)
		b = appendString(b, a.stopReason())
		b = append(b, `,"stop_sequence":`...)
		b = appendNullableString(b, a.r.stopSequence)
		b = append(b, `},"usage":{"output_tokens":`...)
		b = appendInt(b, a.r.outputTokens)
		return append(b, `}}`...)
	})
	event("message_stop", func(b []byte) []byte { return append(b, `{"type":"message_stop"}`...) })
	return ev
}

// anAuth checks x-api-key, or Authorization: Bearer as some SDKs send it.
func (s *Server) anAuth(ctx *fasthttp.RequestCtx) *anError {
	key := string(ctx.Request.Header.Peek("x-api-key"))
	if key == "" {
		key, _ = bearer(ctx.Request.Header.Peek("Authorization"))
	}
	if key == "" {
		return &anError{fasthttp.StatusUnauthorized, "authentication_error", "x-api-key header is required"}
	}
	if s.cfg.AnthropicKey != "" && key != s.cfg.AnthropicKey {
		return &anError{fasthttp.StatusUnauthorized, "authentication_error", "invalid x-api-key"}
	}
	return nil
}

// anVersion checks the anthropic-version header: required, and a date.
func anVersion(v []byte) *anError {
	if len(v) == 0 {
		return anInvalid("anthropic-version: header is required")
	}
	if _, err := time.Parse(time.DateOnly, string(v)); err != nil {
		return anInvalid("anthropic-version: %q is not a valid version", v)
	}
	return nil
}

// anStatusError is the error a server_error rule answers with its status.
func anStatusError(status int) *anError {
	types := map[int]string{
		400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
		404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
		500: "api_error", 504: "timeout_error", 529: "overloaded_error",
	}
	t, ok := types[status]
	switch {
	case ok:
	case status < 500:
		t = "invalid_request_error"
	default:
		t = "api_error"
	}
	msg := "Internal server error"
	if status < 500 {
		msg = fmt.Sprintf("Mock error with status %d", status)
	}
	return &anError{status, t, msg}
}

func anWriteError(ctx *fasthttp.RequestCtx, requestID string, e *anError) {
	buf := getBuf()
	defer putBuf(buf)
	b := append(*buf, `{"type":"error","error":{"type":`...)
	b = appendString(b, e.typ)
	b = append(b, `,"message":`...)
	b = appendString(b, e.message)
	b = append(b, `},"request_id":`...)
	b = appendString(b, requestID)
	b = append(b, "}\n"...)
	*buf = b
	ctx.SetStatusCode(e.status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

const (
	anRequestLimit = 4000
	anTokenLimit   = 400000
)

func anSetRateLimit(ctx *fasthttp.RequestCtx, remaining int, reset string, tokens int) {
	h := &ctx.Response.Header
	var num [20]byte
	h.SetBytesV("anthropic-ratelimit-requests-limit", appendInt(num[:0], anRequestLimit))
	h.SetBytesV("anthropic-ratelimit-requests-remaining", appendInt(num[:0], remaining))
	h.Set("anthropic-ratelimit-requests-reset", reset)
	h.SetBytesV("anthropic-ratelimit-tokens-limit", appendInt(num[:0], anTokenLimit))
	h.SetBytesV("anthropic-ratelimit-tokens-remaining", appendInt(num[:0], anTokenLimit-tokens))
	h.Set("anthropic-ratelimit-tokens-reset", reset)
}

// resetIn1s is the RFC 3339 time one second from now, formatted once per
// second rather than once per request.
func resetIn1s() string {
	now := time.Now().Unix()
	if c := resetCache.Load(); c != nil && c.sec == now {
		return c.s
	}
	c := &cachedReset{sec: now, s: time.Unix(now+1, 0).UTC().Format(time.RFC3339)}
	resetCache.Store(c)
	return c.s
}

type cachedReset struct {
	sec int64
	s   string
}

var resetCache atomic.Pointer[cachedReset]

package mock

import (
	"fmt"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// OpenAI Chat Completions: POST /v1/chat/completions, as WIRE.md describes —
// the handler, the answers, the stream and the errors.

// oaShuttingDown answers a request whose wait Close cut short.
var oaShuttingDown = &oaError{fasthttp.StatusServiceUnavailable, "server_error", "The server is shutting down.", "", ""}

// serveOpenAI answers POST /v1/chat/completions.
func (s *Server) serveOpenAI(ctx *fasthttp.RequestCtx) {
	if rid := ctx.Request.Header.Peek("X-Request-ID"); len(rid) > 0 {
		ctx.Response.Header.SetBytesV("x-request-id", rid)
	} else {
		ctx.Response.Header.Set("x-request-id", "req_"+s.ids.next())
	}
	if !ctx.IsPost() {
		s.record(ctx, openai, outcomeInvalid, "", false)
		oaWriteError(ctx, &oaError{fasthttp.StatusMethodNotAllowed, "invalid_request_error",
			fmt.Sprintf("Invalid method for URL (%s /v1/chat/completions)", ctx.Method()), "", ""})
		return
	}
	if e := s.oaAuth(ctx); e != nil {
		s.record(ctx, openai, outcomeAuth, "", false)
		oaWriteError(ctx, e)
		return
	}
	req, e := oaDecode(ctx.Request.Body())
	if e == nil && strings.HasPrefix(*req.Model, unknownModelPrefix) {
		e = &oaError{fasthttp.StatusNotFound, "invalid_request_error",
			fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", *req.Model), "", "model_not_found"}
	}
	if e != nil {
		model, streamed := "", false
		if req != nil && req.Model != nil {
			model, streamed = *req.Model, req.stream()
		}
		s.record(ctx, openai, outcomeInvalid, model, streamed)
		oaWriteError(ctx, e)
		return
	}
	rule, faulted := s.takeFault(ctx, openai, *req.Model, req.stream())
	p := req.prompt()
	if faulted {
		switch rule.Fault {
		case FaultTimeout:
			if !s.wait(time.Duration(rule.DelayMS) * time.Millisecond) {
				oaWriteError(ctx, oaShuttingDown)
				return
			}
			s.oaAnswer(ctx, req, &p, "")
		case FaultRateLimit:
			setRetryAfter(ctx, rule.RetryAfterS)
			oaSetRateLimit(ctx, 0, fmt.Sprintf("%ds", rule.RetryAfterS))
			oaSetTokenLimit(ctx, 0)
			oaWriteError(ctx, &oaError{fasthttp.StatusTooManyRequests, "requests",
				fmt.Sprintf("Rate limit reached for %s in organization org-mock on requests per min (RPM): Limit %d, Used %d, Requested 1. Please try again in %ds.", *req.Model, oaRequestLimit, oaRequestLimit, rule.RetryAfterS),
				"", "rate_limit_exceeded"})
		case FaultServerError:
			oaWriteError(ctx, oaStatusError(rule.Status))
		case FaultOverloaded:
			oaWriteError(ctx, &oaError{fasthttp.StatusServiceUnavailable, "server_error",
				"The engine is currently overloaded, please try again later.", "", ""})
		case FaultMalformed, FaultStreamCut, FaultStreamStall, FaultStreamTruncate:
			if !s.wait(s.latency()) {
				oaWriteError(ctx, oaShuttingDown)
				return
			}
			s.oaAnswer(ctx, req, &p, rule.Fault)
		case FaultReset:
			s.hijackReset(ctx)
		case FaultHang:
			s.hijackHang(ctx)
		}
		return
	}
	if !s.wait(s.latency()) {
		oaWriteError(ctx, oaShuttingDown)
		return
	}
	s.oaAnswer(ctx, req, &p, "")
}

// oaAnswer writes the reply, whole or streamed; fault FaultMalformed breaks
// its body and FaultStreamCut cuts its stream.
func (s *Server) oaAnswer(ctx *fasthttp.RequestCtx, req *oaRequest, p *prompt, fault string) {
	r := compose(p)
	a := oaAnswerData{
		id:      "chatcmpl-" + s.ids.next(),
		created: time.Now().Unix(),
		model:   *req.Model,
		n:       req.choices(),
		r:       &r,
	}
	if r.finish == finishTool {
		a.callID = "call_" + s.ids.next()
	}
	oaSetRateLimit(ctx, oaRequestLimit-1, "6ms")
	oaSetTokenLimit(ctx, r.inputTokens+a.n*r.outputTokens)
	if req.stream() {
		s.sendStream(ctx, a.renderStream(req.includeUsage()), fault)
		return
	}
	sendBody(ctx, a.render, fault)
}

type oaAnswerData struct {
	id      string
	created int64
	model   string
	n       int
	callID  string
	r       *reply
}

func (a *oaAnswerData) finishReason() string {
	switch a.r.finish {
	case finishLength:
		return "length"
	case finishTool:
		return "tool_calls"
	case finishRefusal:
		return "content_filter"
	}
	return "stop"
}

func (a *oaAnswerData) usage(b []byte) []byte {
	out := a.n * a.r.outputTokens
	b = append(b, `{"prompt_tokens":`...)
	b = appendInt(b, a.r.inputTokens)
	b = append(b, `,"completion_tokens":`...)
	b = appendInt(b, out)
	b = append(b, `,"total_tokens":`...)
	b = appendInt(b, a.r.inputTokens+out)
	return append(b, '}')
}

func (a *oaAnswerData) toolCall(b []byte, withIndex bool, args string) []byte {
	b = append(b, `[{`...)
	if withIndex {
		b = append(b, `"index":0,`...)
	}
	b = append(b, `"id":`...)
	b = appendString(b, a.callID)
	b = append(b, `,"type":"function","function":{"name":`...)
	b = appendString(b, a.r.toolName)
	b = append(b, `,"arguments":`...)
	b = appendString(b, args)
	return append(b, `}}]`...)
}

// render appends the chat.completion object.
func (a *oaAnswerData) render(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, a.id)
	b = append(b, `,"object":"chat.completion","created":`...)
	b = appendInt(b, int(a.created))
	b = append(b, `,"model":`...)
	b = appendString(b, a.model)
	b = append(b, `,"choices":[`...)
	for i := range a.n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = appendInt(b, i)
		b = append(b, `,"message":{"role":"assistant","content":`...)
		if a.r.finish == finishTool {
			b = append(b, `null,"tool_calls":`...)
			b = a.toolCall(b, false, a.r.toolArgs)
		} else {
			b = appendString(b, a.r.text)
		}
		b = append(b, `,"refusal":null},"logprobs":null,"finish_reason":"`...)
		b = append(b, a.finishReason()...)
		b = append(b, `"}`...)
	}
	b = append(b, `],"usage":`...)
	b = a.usage(b)
	return append(b, '}')
}

// chunkHead appends the start of one chunk event: its data prefix, id,
// object, created and model.
func (a *oaAnswerData) chunkHead(b []byte) []byte {
	b = append(b, `data: {"id":`...)
	b = appendString(b, a.id)
	b = append(b, `,"object":"chat.completion.chunk","created":`...)
	b = appendInt(b, int(a.created))
	b = append(b, `,"model":`...)
	return appendString(b, a.model)
}

// renderStream renders the chat.completion.chunk stream, ending in [DONE].
func (a *oaAnswerData) renderStream(includeUsage bool) *events {
	ev := &events{b: make([]byte, 0, 512+200*a.n*(countWords(a.r.text)+4))}
	chunk := func(choice int, delta func(b []byte) []byte, finish string) {
		b := append(a.chunkHead(ev.b), `,"choices":[{"index":`...)
		b = appendInt(b, choice)
		b = append(b, `,"delta":`...)
		b = delta(b)
		b = append(b, `,"logprobs":null,"finish_reason":`...)
		b = appendNullableString(b, finish)
		b = append(b, `}]`...)
		if includeUsage {
			b = append(b, `,"usage":null`...)
		}
		ev.b = append(b, "}\n\n"...)
		ev.mark()
	}
	for i := range a.n {
		if a.r.finish == finishTool {
			chunk(i, func(b []byte) []byte {
				b = append(b, `{"role":"assistant","content":null,"tool_calls":`...)
				return append(a.toolCall(b, true, ""), '}')
			}, "")
		} else {
			chunk(i, func(b []byte) []byte { return append(b, `{"role":"assistant","content":""}`...) }, "")
		}
	}
	var parts []string
	if a.r.finish == finishTool {
		parts = halves(a.r.toolArgs)
	} else {
		parts = pieces(a.r.text)
	}
	for _, piece := range parts {
		for i := range a.n {
			chunk(i, func(b []byte) []byte {
				if a.r.finish == finishTool {
					b = append(b, `{"tool_calls":[{"index":0,"function":{"arguments":`...)
					return append(appendString(b, piece), `}}]}`...)
				}
				b = append(b, `{"content":`...)
				return append(appendString(b, piece), '}')
			}, "")
		}
	}
	for i := range a.n {
		chunk(i, func(b []byte) []byte { return append(b, `{}`...) }, a.finishReason())
	}
	if includeUsage {
		b := append(a.chunkHead(ev.b), `,"choices":[],"usage":`...)
		b = a.usage(b)
		ev.b = append(b, "}\n\n"...)
		ev.mark()
	}
	ev.b = append(ev.b, "data: [DONE]\n\n"...)
	ev.mark()
	return ev
}

// oaAuth checks "Authorization: Bearer KEY".
func (s *Server) oaAuth(ctx *fasthttp.RequestCtx) *oaError {
	key, ok := bearer(ctx.Request.Header.Peek("Authorization"))
	if !ok || key == "" {
		return &oaError{fasthttp.StatusUnauthorized, "invalid_request_error",
			"You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
			"", "invalid_api_key"}
	}
	if s.cfg.OpenAIKey != "" && key != s.cfg.OpenAIKey {
		return &oaError{fasthttp.StatusUnauthorized, "invalid_request_error",
			"Incorrect API key provided: " + redact(key) + ". You can find your API key at https://platform.openai.com/account/api-keys.",
			"", "invalid_api_key"}
	}
	return nil
}

// oaStatusError is the error a server_error rule answers with its status.
func oaStatusError(status int) *oaError {
	switch {
	case status == fasthttp.StatusUnauthorized:
		return &oaError{status, "invalid_request_error", "Incorrect API key provided.", "", "invalid_api_key"}
	case status == fasthttp.StatusNotFound:
		return &oaError{status, "invalid_request_error", "The model does not exist or you do not have access to it.", "", "model_not_found"}
	case status == fasthttp.StatusTooManyRequests:
		return &oaError{status, "requests", "Rate limit reached for requests.", "", "rate_limit_exceeded"}
	case status < 500:
		return &oaError{status, "invalid_request_error", fmt.Sprintf("Mock error with status %d.", status), "", ""}
	}
	return &oaError{status, "server_error", "The server had an error while processing your request. Sorry about that!", "", ""}
}

func oaWriteError(ctx *fasthttp.RequestCtx, e *oaError) {
	buf := getBuf()
	defer putBuf(buf)
	b := append(*buf, `{"error":{"message":`...)
	b = appendString(b, e.message)
	b = append(b, `,"type":`...)
	b = appendString(b, e.typ)
	b = append(b, `,"param":`...)
	b = appendNullableString(b, e.param)
	b = append(b, `,"code":`...)
	b = appendNullableString(b, e.code)
	b = append(b, "}}\n"...)
	*buf = b
	ctx.SetStatusCode(e.status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

const (
	oaRequestLimit = 10000
	oaTokenLimit   = 2000000
)

func oaSetRateLimit(ctx *fasthttp.RequestCtx, remaining int, reset string) {
	h := &ctx.Response.Header
	var num [20]byte
	h.SetBytesV("x-ratelimit-limit-requests", appendInt(num[:0], oaRequestLimit))
	h.SetBytesV("x-ratelimit-remaining-requests", appendInt(num[:0], remaining))
	h.Set("x-ratelimit-reset-requests", reset)
}

func oaSetTokenLimit(ctx *fasthttp.RequestCtx, used int) {
	h := &ctx.Response.Header
	var num [20]byte
	h.SetBytesV("x-ratelimit-limit-tokens", appendInt(num[:0], oaTokenLimit))
	h.SetBytesV("x-ratelimit-remaining-tokens", appendInt(num[:0], oaTokenLimit-used))
	h.Set("x-ratelimit-reset-tokens", "0s")
}

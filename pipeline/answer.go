package pipeline

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llm-gateway/gateway/providers/jsonenc"
)

// writeCompletion answers a success: the OpenAI chat.completion object with
// the gateway's own fields added at the top level (DESIGN §5), so curl users
// see request_id, content, provider, attempts and total_latency_ms while the
// OpenAI SDKs see an unchanged completion.
func writeCompletion(ctx *fasthttp.RequestCtx, id string, res Result, latency time.Duration) {
	body := res.Response.Raw
	if body == nil {
		var err error
		if body, err = json.Marshal(res.Response); err != nil {
			writeError(ctx, id, &apiError{Status: 500, Type: typeServer, Code: "internal_error", Message: "the answer could not be encoded"}, res.Attempts, latency)
			return
		}
	}
	// The body is a JSON object (the adapters checked it): drop its closing
	// brace and append the gateway's fields.
	body = bytes.TrimRight(body, " \t\r\n")
	out := bodyBuffer(ctx)
	out = append(out, bytes.TrimRight(body[:len(body)-1], " \t\r\n")...)
	if out[len(out)-1] != '{' {
		out = append(out, ',')
	}
	out = append(out, `"request_id":`...)
	out = jsonenc.AppendString(out, id)
	out = append(out, `,"content":`...)
	out = jsonenc.AppendString(out, res.Response.Text())
	out = append(out, `,"provider":`...)
	out = jsonenc.AppendString(out, res.Provider)
	out = append(out, `,"attempts":`...)
	out = strconv.AppendInt(out, int64(res.Attempts), 10)
	out = append(out, `,"total_latency_ms":`...)
	out = strconv.AppendInt(out, latency.Milliseconds(), 10)
	out = append(out, '}')
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("X-Request-ID", id)
	ctx.Response.SwapBody(out)
}

// bodyBuffer returns the response's own body buffer, emptied, for an answer
// to be appended to; ctx.Response.SwapBody(out) gives it back. fasthttp pools
// that buffer across requests, so an answer is written into memory already
// in use instead of a fresh allocation, and is not copied again.
func bodyBuffer(ctx *fasthttp.RequestCtx) []byte { return ctx.Response.SwapBody(nil)[:0] }

// writeError answers in the OpenAI error shape plus the gateway's fields.
func writeError(ctx *fasthttp.RequestCtx, id string, ae *apiError, attempts int, latency time.Duration) {
	out := bodyBuffer(ctx)
	out = append(out, `{"error":{"message":`...)
	out = jsonenc.AppendString(out, ae.Message)
	out = append(out, `,"type":`...)
	out = jsonenc.AppendString(out, ae.Type)
	out = append(out, `,"param":`...)
	out = appendNullable(out, ae.Param)
	out = append(out, `,"code":`...)
	out = appendNullable(out, ae.Code)
	out = append(out, `},"request_id":`...)
	out = jsonenc.AppendString(out, id)
	out = append(out, `,"attempts":`...)
	out = strconv.AppendInt(out, int64(attempts), 10)
	out = append(out, `,"total_latency_ms":`...)
	out = strconv.AppendInt(out, latency.Milliseconds(), 10)
	out = append(out, "}\n"...)
	ctx.SetStatusCode(ae.Status)
	ctx.SetContentType("application/json")
	if id != "" {
		ctx.Response.Header.Set("X-Request-ID", id)
	}
	if ae.RetryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(retryAfterSeconds(ae.RetryAfter)))
	}
	if ae.Retried {
		ctx.Response.Header.Set("x-should-retry", "false")
	}
	ctx.Response.SwapBody(out)
}

func appendNullable(out []byte, s string) []byte {
	if s == "" {
		return append(out, "null"...)
	}
	return jsonenc.AppendString(out, s)
}

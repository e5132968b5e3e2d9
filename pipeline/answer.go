package pipeline

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
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
	out := make([]byte, 0, len(body)+256)
	out = append(out, bytes.TrimRight(body[:len(body)-1], " \t\r\n")...)
	if out[len(out)-1] != '{' {
		out = append(out, ',')
	}
	out = append(out, `"request_id":`...)
	out = strconv.AppendQuote(out, id)
	out = append(out, `,"content":`...)
	out = appendJSONString(out, res.Response.Text())
	out = append(out, `,"provider":`...)
	out = strconv.AppendQuote(out, res.Provider)
	out = append(out, `,"attempts":`...)
	out = strconv.AppendInt(out, int64(res.Attempts), 10)
	out = append(out, `,"total_latency_ms":`...)
	out = strconv.AppendInt(out, latency.Milliseconds(), 10)
	out = append(out, '}')
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("X-Request-ID", id)
	ctx.Response.SetBodyRaw(out) // out is ours alone: no second copy
}

// writeError answers in the OpenAI error shape plus the gateway's fields.
func writeError(ctx *fasthttp.RequestCtx, id string, ae *apiError, attempts int, latency time.Duration) {
	out := make([]byte, 0, 256+len(ae.Message))
	out = append(out, `{"error":{"message":`...)
	out = appendJSONString(out, ae.Message)
	out = append(out, `,"type":`...)
	out = appendJSONString(out, ae.Type)
	out = append(out, `,"param":`...)
	out = appendNullable(out, ae.Param)
	out = append(out, `,"code":`...)
	out = appendNullable(out, ae.Code)
	out = append(out, `},"request_id":`...)
	out = appendJSONString(out, id)
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
	ctx.SetBody(out)
}

func appendNullable(out []byte, s string) []byte {
	if s == "" {
		return append(out, "null"...)
	}
	return appendJSONString(out, s)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string without allocating: quotes,
// backslashes and control bytes escaped, invalid UTF-8 replaced by U+FFFD
// (as encoding/json does), U+2028 and U+2029 escaped for JavaScript readers.
func appendJSONString(out []byte, s string) []byte {
	out = append(out, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			out = append(out, s[start:i]...)
			switch c {
			case '"', '\\':
				out = append(out, '\\', c)
			case '\n':
				out = append(out, '\\', 'n')
			case '\r':
				out = append(out, '\\', 'r')
			case '\t':
				out = append(out, '\\', 't')
			default:
				out = append(out, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			out = append(out, s[start:i]...)
			out = append(out, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			out = append(out, s[start:i]...)
			out = append(out, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	out = append(out, s[start:]...)
	return append(out, '"')
}

package providers

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// MaxRetryAfter caps the wait a provider may ask for: a Retry-After of a day
// is a configuration problem upstream, not a reason to hold a request.
const MaxRetryAfter = time.Hour

// maxMessageLen bounds the provider message kept in an Error.
const maxMessageLen = 2048

// ClassOfStatus maps a provider's non-2xx HTTP status to its class, DESIGN §4.
// 408 is a timeout and 409 (a conflict upstream) a server failure, because
// both are worth retrying; 529 is Anthropic's overloaded.
func ClassOfStatus(status int) Class {
	switch {
	case status == http.StatusTooManyRequests:
		return ClassRateLimited
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return ClassAuth
	case status == http.StatusRequestTimeout:
		return ClassTimeout
	case status == http.StatusConflict:
		return ClassServer
	case status == 529:
		return ClassOverloaded
	case status >= 400 && status < 500:
		return ClassInvalid
	default: // 5xx, and anything else that is not a success
		return ClassServer
	}
}

// classOfErrorType maps a provider's error type, as found in a mid-stream
// error event (which has no status), to a class.
func classOfErrorType(t string) Class {
	switch t {
	case "overloaded_error", "overloaded":
		return ClassOverloaded
	case "rate_limit_error", "rate_limit_exceeded", "requests", "tokens", "insufficient_quota":
		return ClassRateLimited
	case "authentication_error", "permission_error", "invalid_api_key":
		return ClassAuth
	case "invalid_request_error", "not_found_error", "request_too_large":
		return ClassInvalid
	default: // api_error, server_error, timeout_error, and types we do not know
		return ClassServer
	}
}

// headerGetter is the part of a response header ParseRetryAfter reads;
// *fasthttp.ResponseHeader is one.
type headerGetter interface {
	Peek(key string) []byte
}

// ParseRetryAfter reads how long the provider asked us to wait: retry-after-ms
// (milliseconds, fractions allowed) first, then retry-after as seconds
// (integer or decimal) or an HTTP date, measured from now. A date in the past
// means 0. Garbage and negative values are ignored; the result is capped at
// MaxRetryAfter. It returns 0 when the provider said nothing usable.
func ParseRetryAfter(h headerGetter, now time.Time) time.Duration {
	if v, ok := parseDecimal(h.Peek("Retry-After-Ms")); ok {
		return capRetryAfter(v * float64(time.Millisecond))
	}
	raw := strings.TrimSpace(string(h.Peek("Retry-After")))
	if raw == "" {
		return 0
	}
	if v, ok := parseDecimal([]byte(raw)); ok {
		return capRetryAfter(v * float64(time.Second))
	}
	if t, err := http.ParseTime(raw); err == nil {
		d := t.Sub(now)
		if d < 0 {
			return 0
		}
		return capRetryAfter(float64(d))
	}
	return 0
}

// parseDecimal accepts only plain non-negative decimals ("2", "1.5"), not the
// exponents, signs, hex, Inf or NaN that strconv.ParseFloat would also take.
func parseDecimal(b []byte) (float64, bool) {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return 0, false
	}
	dot := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
		case c == '.' && !dot && i > 0 && i < len(s)-1:
			dot = true
		default:
			return 0, false
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, false
	}
	return v, true
}

func capRetryAfter(ns float64) time.Duration {
	if ns >= float64(MaxRetryAfter) {
		return MaxRetryAfter
	}
	return time.Duration(ns)
}

// providerErrorBody is the error answer of both APIs: OpenAI's
// {"error":{"message","type","param","code"}} and Anthropic's
// {"type":"error","error":{"type","message"}}.
type providerErrorBody struct {
	Error json.RawMessage `json:"error"`
}

type providerErrorDetail struct {
	Message string          `json:"message"`
	Type    string          `json:"type"`
	Param   json.RawMessage `json:"param"`
	Code    json.RawMessage `json:"code"`
}

// parseErrorDetail extracts the provider's own message, type, param and code
// from an error body. ok is false when the body is not one of the two shapes.
func parseErrorDetail(body []byte) (d providerErrorDetail, ok bool) {
	var env providerErrorBody
	if json.Unmarshal(body, &env) != nil || len(env.Error) == 0 {
		return d, false
	}
	switch env.Error[0] {
	case '{':
		if json.Unmarshal(env.Error, &d) != nil {
			return d, false
		}
		return d, true
	case '"': // some proxies answer {"error":"text"}
		if json.Unmarshal(env.Error, &d.Message) != nil {
			return d, false
		}
		return d, true
	}
	return d, false
}

// scalarText renders a JSON string or number as text; null and anything else
// as "".
func scalarText(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return string(raw)
	}
	return ""
}

// statusError classifies a non-2xx answer, keeping the provider's own words.
func (u *upstream) statusError(status int, h headerGetter, body []byte, now time.Time) *Error {
	e := &Error{
		Class:      ClassOfStatus(status),
		Provider:   u.provider,
		Status:     status,
		RetryAfter: ParseRetryAfter(h, now),
	}
	if d, ok := parseErrorDetail(body); ok {
		e.Message = d.Message
		e.Type = d.Type
		e.Code = scalarText(d.Code)
		e.Param = scalarText(d.Param)
	}
	if e.Message == "" {
		e.Message = "upstream answered " + strconv.Itoa(status) + " " + fasthttp.StatusMessage(status)
	}
	return u.redact(e)
}

// eventError classifies an error event inside a stream (no status).
func (u *upstream) eventError(d providerErrorDetail) *Error {
	e := &Error{
		Class:    classOfErrorType(d.Type),
		Provider: u.provider,
		Type:     d.Type,
		Code:     scalarText(d.Code),
		Param:    scalarText(d.Param),
		Message:  d.Message,
	}
	if e.Message == "" {
		e.Message = "upstream stream error"
		if d.Type != "" {
			e.Message += ": " + d.Type
		}
	}
	return u.redact(e)
}

// fail builds an Error of a class with our own message.
func (u *upstream) fail(c Class, status int, msg string, err error) *Error {
	return u.redact(&Error{Class: c, Provider: u.provider, Status: status, Message: msg, Err: err})
}

// transportError classifies a failure to get an answer at all. aborted is why
// the attempt was cut by us ("" when it was not). The message names what
// happened without addresses (it may reach the client); the transport error
// itself stays in Err for the logs.
func (u *upstream) transportError(err error, aborted Class) *Error {
	switch aborted {
	case ClassCanceled:
		return u.fail(ClassCanceled, 0, "the call was canceled", err)
	case ClassTimeout:
		return u.fail(ClassTimeout, 0, "no answer within the attempt timeout", err)
	}
	c := classOfTransportError(err)
	var msg string
	switch c {
	case ClassTimeout:
		msg = "no answer within the attempt timeout"
	case ClassConnect:
		msg = "could not reach the provider: " + connectDetail(err)
	case ClassMalformed:
		msg = "the provider's answer could not be read"
	default:
		msg = "the call to the provider failed"
	}
	return u.fail(c, 0, msg, err)
}

// connectDetail says in a few words why no connection could be used.
func connectDetail(err error) string {
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return "connection reset"
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return "no free connection (max_conns busy for max_conn_wait)"
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF):
		return "connection closed before any answer"
	case errors.As(err, &dnsErr):
		return "host not found"
	}
	return "connection failed"
}

// classOfTransportError maps a transport error of fasthttp or the network to
// its class: timeouts, then everything that means "no usable connection"
// (refused, reset, closed before the answer, DNS, no free connection).
func classOfTransportError(err error) Class {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout),
		errors.Is(err, fasthttp.ErrTLSHandshakeTimeout),
		errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return ClassTimeout
	case errors.Is(err, fasthttp.ErrNoFreeConns),
		errors.Is(err, fasthttp.ErrConnectionClosed),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, syscall.EPIPE),
		errors.Is(err, net.ErrClosed):
		return ClassConnect
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return ClassMalformed
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var brokenChunk fasthttp.ErrBrokenChunk
	switch {
	case errors.As(err, &dnsErr), errors.As(err, &opErr):
		return ClassConnect
	case errors.As(err, &brokenChunk):
		return ClassConnect
	}
	return ClassServer
}

// redact removes the API key from everything an Error will print, and bounds
// the provider's message. Providers do echo keys (masked or not) in auth
// errors; a wrapped error that mentions the key is replaced by its redacted
// text.
func (u *upstream) redact(e *Error) *Error {
	// Replace the key before the message is cut: a key that straddled the
	// cut would otherwise survive in part.
	if u.key != "" {
		e.Message = strings.ReplaceAll(e.Message, u.key, "[redacted]")
	}
	if len(e.Message) > maxMessageLen {
		n := maxMessageLen
		for n > 0 && !utf8.RuneStart(e.Message[n]) {
			n--
		}
		e.Message = e.Message[:n] + "…"
	}
	if u.key == "" {
		return e
	}
	e.Type = strings.ReplaceAll(e.Type, u.key, "[redacted]")
	e.Code = strings.ReplaceAll(e.Code, u.key, "[redacted]")
	e.Param = strings.ReplaceAll(e.Param, u.key, "[redacted]")
	if e.Err != nil && strings.Contains(e.Err.Error(), u.key) {
		e.Err = errors.New(strings.ReplaceAll(e.Err.Error(), u.key, "[redacted]"))
	}
	return e
}

package providers

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// headers is a headerGetter for tests; keys are matched case-insensitively.
type headers map[string]string

func (h headers) Peek(key string) []byte {
	for k, v := range h {
		if strings.EqualFold(k, key) {
			return []byte(v)
		}
	}
	return nil
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	date := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }
	tests := []struct {
		name string
		h    headers
		want time.Duration
	}{
		{"nothing", headers{}, 0},
		{"integer seconds", headers{"Retry-After": "2"}, 2 * time.Second},
		{"decimal seconds", headers{"retry-after": "1.5"}, 1500 * time.Millisecond},
		{"seconds with spaces", headers{"Retry-After": " 3 "}, 3 * time.Second},
		{"zero", headers{"Retry-After": "0"}, 0},
		{"HTTP date ahead", headers{"Retry-After": date(30 * time.Second)}, 30 * time.Second},
		{"RFC 850 date ahead", headers{"Retry-After": now.Add(time.Minute).Format(time.RFC850)}, time.Minute},
		{"HTTP date past is zero", headers{"Retry-After": date(-time.Hour)}, 0},
		{"milliseconds", headers{"retry-after-ms": "1500"}, 1500 * time.Millisecond},
		{"fractional milliseconds", headers{"retry-after-ms": "250.5"}, 250*time.Millisecond + 500*time.Microsecond},
		{"milliseconds win over seconds", headers{"retry-after-ms": "100", "retry-after": "9"}, 100 * time.Millisecond},
		{"garbage milliseconds fall back to seconds", headers{"retry-after-ms": "soon", "retry-after": "4"}, 4 * time.Second},
		{"negative milliseconds fall back to seconds", headers{"retry-after-ms": "-100", "retry-after": "4"}, 4 * time.Second},
		{"garbage", headers{"Retry-After": "soon"}, 0},
		{"negative seconds", headers{"Retry-After": "-3"}, 0},
		{"plus sign", headers{"Retry-After": "+3"}, 0},
		{"exponent", headers{"Retry-After": "1e3"}, 0},
		{"NaN", headers{"Retry-After": "NaN"}, 0},
		{"Inf", headers{"Retry-After": "Inf"}, 0},
		{"hex", headers{"Retry-After": "0x10"}, 0},
		{"trailing dot", headers{"Retry-After": "3."}, 0},
		{"two numbers", headers{"Retry-After": "3 4"}, 0},
		{"capped at an hour", headers{"Retry-After": "999999"}, MaxRetryAfter},
		{"date capped at an hour", headers{"Retry-After": date(48 * time.Hour)}, MaxRetryAfter},
		{"huge milliseconds capped", headers{"retry-after-ms": "99999999999999999999999"}, MaxRetryAfter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseRetryAfter(tt.h, now); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
	t.Run("fasthttp header", func(t *testing.T) {
		var h fasthttp.ResponseHeader
		h.Set("retry-after", "7")
		if got := ParseRetryAfter(&h, now); got != 7*time.Second {
			t.Errorf("got %s", got)
		}
	})
}

func TestClassOfStatus(t *testing.T) {
	tests := map[Class][]int{
		ClassInvalid:     {400, 404, 405, 413, 415, 418, 422, 451},
		ClassAuth:        {401, 403},
		ClassTimeout:     {408},
		ClassServer:      {409, 500, 501, 502, 503, 504, 520, 599, 302, 100},
		ClassRateLimited: {429},
		ClassOverloaded:  {529},
	}
	for want, statuses := range tests {
		for _, status := range statuses {
			if got := ClassOfStatus(status); got != want {
				t.Errorf("%d: got %s, want %s", status, got, want)
			}
		}
	}
}

func TestClassOfTransportError(t *testing.T) {
	opErr := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	tests := []struct {
		err  error
		want Class
	}{
		{fasthttp.ErrTimeout, ClassTimeout},
		{fmt.Errorf("wrapped: %w", fasthttp.ErrTimeout), ClassTimeout},
		{&net.OpError{Op: "read", Err: timeoutErr{}}, ClassTimeout},
		{fasthttp.ErrTLSHandshakeTimeout, ClassTimeout},
		{fasthttp.ErrNoFreeConns, ClassConnect},
		{fasthttp.ErrConnectionClosed, ClassConnect},
		{opErr, ClassConnect},
		{syscall.ECONNRESET, ClassConnect},
		{&net.DNSError{Err: "no such host", Name: "api.invalid"}, ClassConnect},
		{fasthttp.ErrBrokenChunk{}, ClassConnect},
		{fasthttp.ErrBodyTooLarge, ClassMalformed},
		{errors.New("something else"), ClassServer},
	}
	for _, tt := range tests {
		if got := classOfTransportError(tt.err); got != tt.want {
			t.Errorf("%v: got %s, want %s", tt.err, got, tt.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestStatusErrorKeepsTheProvidersWords(t *testing.T) {
	u := &upstream{provider: "p", key: testOpenAIKey}
	now := time.Now()
	tests := []struct {
		name   string
		status int
		h      headers
		body   string
		want   Error
	}{
		{"openai error", 400, nil,
			`{"error":{"message":"Invalid 'temperature'","type":"invalid_request_error","param":"temperature","code":"decimal_above_max_value"}}`,
			Error{Class: ClassInvalid, Status: 400, Message: "Invalid 'temperature'", Type: "invalid_request_error", Param: "temperature", Code: "decimal_above_max_value"}},
		{"openai insufficient quota stays rate limited, with its code", 429, headers{"retry-after": "20"},
			`{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`,
			Error{Class: ClassRateLimited, Status: 429, RetryAfter: 20 * time.Second, Message: "You exceeded your current quota", Type: "insufficient_quota", Code: "insufficient_quota"}},
		{"anthropic error", 529, nil,
			`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}`,
			Error{Class: ClassOverloaded, Status: 529, Message: "Overloaded", Type: "overloaded_error"}},
		{"numeric code", 500, nil, `{"error":{"message":"m","code":500}}`,
			Error{Class: ClassServer, Status: 500, Message: "m", Code: "500"}},
		{"string error", 502, nil, `{"error":"bad gateway upstream"}`,
			Error{Class: ClassServer, Status: 502, Message: "bad gateway upstream"}},
		{"html body falls back to the status text", 502, nil, `<html>Bad Gateway</html>`,
			Error{Class: ClassServer, Status: 502, Message: "upstream answered 502 Bad Gateway"}},
		{"empty body", 503, headers{"retry-after": "2"}, ``,
			Error{Class: ClassServer, Status: 503, RetryAfter: 2 * time.Second, Message: "upstream answered 503 Service Unavailable"}},
		{"key echoed by the provider is redacted", 401, nil,
			`{"error":{"message":"Incorrect API key provided: ` + testOpenAIKey + `.","type":"invalid_request_error","code":"invalid_api_key"}}`,
			Error{Class: ClassAuth, Status: 401, Message: "Incorrect API key provided: [redacted].", Type: "invalid_request_error", Code: "invalid_api_key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.h
			if h == nil {
				h = headers{}
			}
			got := u.statusError(tt.status, h, []byte(tt.body), now)
			tt.want.Provider = "p"
			if *got != tt.want {
				t.Errorf("got  %+v\nwant %+v", *got, tt.want)
			}
			checkNoKey(t, got)
		})
	}
}

func TestErrorsNeverCarryTheKey(t *testing.T) {
	u := &upstream{provider: "p", key: testAnthropicKey}
	leaky := fmt.Errorf("dial failed for header x-api-key: %s", testAnthropicKey)
	errs := []*Error{
		u.transportError(leaky, ""),
		u.transportError(leaky, ClassCanceled),
		u.fail(ClassMalformed, 200, "bad body near "+testAnthropicKey, leaky),
		u.eventError(providerErrorDetail{Type: "api_error", Message: "key " + testAnthropicKey}),
		u.redact(&Error{Class: ClassInvalid, Param: testAnthropicKey, Code: testAnthropicKey, Type: testAnthropicKey}),
	}
	for _, e := range errs {
		checkNoKey(t, e)
	}
	long := u.fail(ClassServer, 500, strings.Repeat("x", 10*maxMessageLen), nil)
	if len(long.Message) > maxMessageLen+len("…") {
		t.Errorf("message of %d bytes kept", len(long.Message))
	}
}

package providers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/llm-gateway/gateway/mock"
	"github.com/llm-gateway/gateway/providers/fuzzseed"
)

// Fuzz targets for what a provider controls: the body of a completion, the
// body and headers of an error answer, and whole HTTP answers read by the
// adapters over a real connection. The SSE parsers are fuzzed by
// FuzzParseOpenAIStream and FuzzParseAnthropicStream, Anthropic bodies by
// FuzzFromAnthropic; these complete the set. Seed corpora are in
// testdata/fuzz/<target>/; docs/reliability.md has the long runs.
//
//	go test -run '^$' -fuzz '^FuzzParseOpenAIResponse$' -fuzztime 10m ./providers/

// FuzzParseOpenAIResponse: a body the OpenAI adapter accepts is a JSON object
// with choices, kept whole as Raw, since the pipeline answers the client by
// appending its own fields before Raw's closing brace.
func FuzzParseOpenAIResponse(f *testing.F) {
	for _, s := range []string{
		`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"hi","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2},"system_fingerprint":"fp"}`,
		`{"choices":[]}`,
		` {"choices":[{"message":{"content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}}]} `,
		`{"object":"list","choices":[]}`,
		`{"choices":null}`,
		`{"choices":[{"message":{"content":"caf` + "\xe9" + `"}}]}`,
		`[{"choices":[]}]`,
		`{"choices":[],"choices":null}`,
		`{"error":{"message":"m"}}`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		in := bytes.Clone(body)
		cr, err := parseOpenAIResponse(body)
		if err != nil {
			if cr != nil {
				t.Fatal("an answer with an error")
			}
			return
		}
		// Raw is the body, with invalid UTF-8 mended (it goes to the client).
		if !bytes.Equal(cr.Raw, in) && !bytes.Equal(cr.Raw, bytes.ToValidUTF8(in, []byte("\uFFFD"))) {
			t.Fatal("Raw is not the body")
		}
		if !utf8.Valid(cr.Raw) {
			t.Fatalf("Raw is not UTF-8: %q", cr.Raw)
		}
		trimmed := bytes.TrimSpace(cr.Raw)
		if len(trimmed) < 2 || trimmed[0] != '{' || trimmed[len(trimmed)-1] != '}' {
			t.Fatalf("accepted a body that is not a JSON object: %q", body)
		}
		if cr.Object != "" && cr.Object != "chat.completion" {
			t.Fatalf("accepted object %q", cr.Object)
		}
		// What the pipeline does with it: its own fields spliced in before
		// the closing brace must leave valid JSON.
		out := append(bytes.Clone(trimmed[:len(trimmed)-1]), []byte(`,"request_id":"r"}`)...)
		if bytes.Equal(bytes.TrimSpace(trimmed[1:len(trimmed)-1]), nil) {
			out = []byte(`{"request_id":"r"}`)
		}
		if !json.Valid(out) {
			t.Fatalf("the spliced answer is not valid JSON: %q", out)
		}
		if _, err := json.Marshal(cr); err != nil {
			t.Fatalf("the answer does not marshal: %v", err)
		}
		_ = cr.Text()
	})
}

// fuzzHeaders is a headerGetter.
type fuzzHeaders map[string]string

func (h fuzzHeaders) Peek(k string) []byte { return []byte(h[k]) }

// FuzzStatusError: any status, Retry-After and error body is classified,
// with a bounded Retry-After and a message that never carries the key.
func FuzzStatusError(f *testing.F) {
	const key = testOpenAIKey
	for _, s := range []struct {
		status   int
		ra, raMs string
		body     string
	}{
		{429, "20", "", `{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}`},
		{429, "", "1500.5", `{"error":{"message":"m","type":"tokens"}}`},
		{503, "Wed, 21 Oct 2099 07:28:00 GMT", "", `{"error":"bad gateway upstream"}`},
		{529, "", "", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}`},
		{401, "", "", `{"error":{"message":"Incorrect API key provided: ` + key + `.","type":"invalid_request_error","code":"invalid_api_key"}}`},
		{400, "-1", "1e9", `{"error":{"message":"m","param":["x"],"code":12.5e3}}`},
		{500, "99999999999999999999", "", `<html>oops</html>`},
		{418, "", "", ``},
		{401, "", "", `{"error":{"message":"` + strings.Repeat("x", maxMessageLen-10) + key + `"}}`},
	} {
		f.Add(s.status, s.ra, s.raMs, []byte(s.body))
	}
	u := &upstream{provider: "p", key: key}
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, status int, ra, raMs string, body []byte) {
		e := u.statusError(status, fuzzHeaders{"Retry-After": ra, "Retry-After-Ms": raMs}, body, now)
		if e.Class == "" || e.Provider != "p" || e.Status != status || e.Message == "" {
			t.Fatalf("error %+v", e)
		}
		if e.RetryAfter < 0 || e.RetryAfter > MaxRetryAfter {
			t.Fatalf("Retry-After %s", e.RetryAfter)
		}
		if len(e.Message) > maxMessageLen+len("…") {
			t.Fatalf("a message of %d bytes", len(e.Message))
		}
		for _, s := range []string{e.Error(), e.Message, e.Type, e.Code, e.Param} {
			if strings.Contains(s, key) {
				t.Fatalf("the key is in %q", s)
			}
		}
		if fuzzLeaksKeyPrefix(e.Message, key, body) {
			t.Fatalf("a prefix of the key is in the message: %q", e.Message)
		}
	})
}

// fuzzLeaksKeyPrefix reports whether s was cut at the message limit right
// after the first 12 or more bytes of key where the provider's body had the
// whole key: a key cut in half by the limit. A body that itself holds only a
// prefix of the key (a provider's masked echo, or a fuzzed one) leaks
// nothing, so the text before the cut followed by the rest of the key must be
// in body.
func fuzzLeaksKeyPrefix(s, key string, body []byte) bool {
	s, cut := strings.CutSuffix(s, "…")
	if !cut {
		return false
	}
	for n := len(key) - 1; n >= 12; n-- {
		if strings.HasSuffix(s, key[:n]) {
			before := s[max(0, len(s)-n-32):]
			if bytes.Contains(body, []byte(before+key[n:])) {
				return true
			}
		}
	}
	return false
}

// TestRedactCutsNoKeyInHalf: a provider message that echoes the key right
// at the message limit must not keep the first part of the key. redact cuts
// the message at maxMessageLen before it replaces the key, so a key that
// straddles the cut is no longer whole when the replacement runs.
func TestRedactCutsNoKeyInHalf(t *testing.T) {
	u := &upstream{provider: "p", key: testOpenAIKey}
	msg := strings.Repeat("x", maxMessageLen-20) + testOpenAIKey + " was rejected"
	e := u.redact(&Error{Class: ClassAuth, Message: msg})
	if fuzzLeaksKeyPrefix(e.Message, testOpenAIKey, []byte(msg)) || strings.Contains(e.Message, testOpenAIKey[:20]) {
		t.Fatalf("the first %d bytes of the key survive redaction: …%q", 20, e.Message[len(e.Message)-40:])
	}
}

// FuzzToAnthropic: any request that decodes is either translated into a JSON
// body for Anthropic or refused with a classified error, never a panic.
func FuzzToAnthropic(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},{"role":"assistant","content":"yo"},{"role":"user","content":[{"type":"text","text":"x"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}],"max_tokens":5,"stop":["a"],"temperature":0.5,"top_p":0.5}`,
		`{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},{"role":"tool","tool_call_id":"c","content":"r"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"auto"}`,
		`{"model":"m","messages":[{"role":"developer","content":[{"type":"text","text":"d"}]},{"role":"user","content":"u"}],"tool_choice":{"type":"function","function":{"name":"f"}},"response_format":{"type":"json_object"}}`,
		`{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","function":{"arguments":"not json"}}]}],"n":2,"logprobs":true}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://x/y.png"}}]}],"max_completion_tokens":3}`,
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, stream bool) {
		var req ChatRequest
		if json.Unmarshal(body, &req) != nil {
			return
		}
		req.Raw = body
		out, err := toAnthropic(&req, "claude", ProviderSettings{DefaultMaxTokens: 1024, AnthropicVersion: DefaultAnthropicVersion}, stream)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Class == "" {
				t.Fatalf("an unclassified error: %v", err)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("the Anthropic body is not JSON: %q", out)
		}
	})
}

// fuzzUpstreamServer is a loopback server that answers every request with
// the current fuzz answer, written raw, one answer per connection.
type fuzzUpstreamServer struct {
	url    string
	answer atomic.Pointer[[]byte]
}

func startFuzzUpstream(f *testing.F) *fuzzUpstreamServer {
	s := &fuzzUpstreamServer{}
	s.url = mock.RawUpstream(f, func(_ context.Context, c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		// One answer per connection: what follows the answer (garbage, a
		// second answer) must not be read as the next call's.
		if a := s.answer.Load(); a != nil {
			_, _ = c.Write(*a)
		}
	})
	return s
}

// FuzzAdapterAnswers: both adapters read any HTTP answer — status, content
// type, framing, body — into a response, a stream or a classified error,
// within the attempt's time, never carrying the key.
func FuzzAdapterAnswers(f *testing.F) {
	const okOpenAI = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`
	const okAnthropic = `{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}`
	sseOpenAI := "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"
	sseAnthropic := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"m\",\"usage\":{\"input_tokens\":3}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	head := func(status int, ct string, n int) string {
		return fmt.Sprintf("HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", status, ct, n)
	}
	chunked := func(ct, body string) string {
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", ct, len(body), body)
	}
	for _, s := range []struct {
		anthropic, stream bool
		answer            string
	}{
		{false, false, head(200, "application/json", len(okOpenAI)) + okOpenAI},
		{true, false, head(200, "application/json", len(okAnthropic)) + okAnthropic},
		{false, true, chunked("text/event-stream", sseOpenAI)},
		{true, true, chunked("text/event-stream; charset=utf-8", sseAnthropic)},
		{false, false, head(429, "application/json", 30) + `{"error":{"message":"slow down"`},
		{false, true, head(401, "application/json", 69+len(testOpenAIKey)) + `{"error":{"message":"Incorrect API key provided: ` + testOpenAIKey + `","code":"k"}}`},
		{true, false, head(529, "application/json", 78) + `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}   `},
		{false, false, head(200, "application/json", 100) + okOpenAI[:50]},
		{false, false, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nabcd"},
		{false, true, head(200, "application/json", len(okOpenAI)) + okOpenAI},
		{true, true, chunked("text/event-stream", "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"o\"}}\n\n")},
		{false, false, "HTTP/1.1 204 No Content\r\n\r\n"},
		{false, false, "garbage\r\n\r\n"},
		{false, true, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"},
	} {
		f.Add(s.anthropic, s.stream, []byte(s.answer))
	}
	srv := startFuzzUpstream(f)
	base := srv.url
	adapters := map[bool]Provider{}
	for _, kind := range []string{KindOpenAI, KindAnthropic} {
		p, err := New(kind, testSettings(kind, base))
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { _ = p.(interface{ Close() error }).Close() })
		adapters[kind == KindAnthropic] = p
	}
	f.Fuzz(func(t *testing.T, anthropic, stream bool, answer []byte) {
		srv.answer.Store(&answer)
		p := adapters[anthropic]
		req := &ChatRequest{Model: "public", Messages: []Message{{Role: "user", Content: Content{Kind: ContentString, Text: "hi"}}}, Stream: stream}
		req.Raw, _ = json.Marshal(req)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		call := Call{Model: "m", RequestID: "fuzz", Timeout: 2 * time.Second}
		start := time.Now()
		checkErr := func(err error) {
			var pe *Error
			if !errors.As(err, &pe) || pe.Class == "" || pe.Provider == "" {
				t.Fatalf("an unclassified error: %T %v", err, err)
			}
			// The adapter's own key (it cannot know another's).
			key := testOpenAIKey
			if anthropic {
				key = testAnthropicKey
			}
			if strings.Contains(err.Error(), key) || strings.Contains(pe.Message, key) {
				t.Fatalf("the key is in the error: %v", err)
			}
		}
		if !stream {
			cr, err := p.Complete(ctx, req, call)
			if err != nil {
				checkErr(err)
			} else {
				if _, err := json.Marshal(cr); err != nil {
					t.Fatalf("the answer does not marshal: %v", err)
				}
				if cr.Raw != nil {
					raw := bytes.TrimSpace(cr.Raw)
					if len(raw) < 2 || raw[0] != '{' || raw[len(raw)-1] != '}' {
						t.Fatalf("Raw is not a JSON object: %q", cr.Raw)
					}
				}
			}
		} else {
			st, err := p.Stream(ctx, req, call)
			if err != nil {
				checkErr(err)
			} else {
				for i := 0; ; i++ {
					if i > len(answer)+1 {
						t.Fatalf("%d chunks from %d bytes", i, len(answer))
					}
					c, err := st.Next(ctx, time.Second)
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						checkErr(err)
						break
					}
					if _, err := json.Marshal(c); err != nil {
						t.Fatalf("a chunk does not marshal: %v", err)
					}
					if c.Raw != nil && !json.Valid(c.Raw) {
						t.Fatalf("a raw chunk is not JSON: %q", c.Raw)
					}
				}
				_ = st.Close()
			}
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Fatalf("the call took %s past its 2s timeout", d)
		}
		// A fresh connection for the next input: bytes left after this
		// answer must not become the next one's.
		hostClientOf(p).close()
	})
}

// TestWriteFuzzSeedCorpora records what the mock really answers — both
// APIs, plain and streamed, clean and under each fault that answers — as the
// committed seed corpora of the fuzz targets that read provider answers
// (testdata/fuzz/<target>/mock-*). It runs only when asked:
//
//	GATEWAY_WRITE_CORPUS=1 go test -run TestWriteFuzzSeedCorpora ./providers/
func TestWriteFuzzSeedCorpora(t *testing.T) {
	if os.Getenv("GATEWAY_WRITE_CORPUS") == "" {
		t.Skip("set GATEWAY_WRITE_CORPUS=1 to rewrite the seed corpora from the mock")
	}
	m, base := startMock(t, mock.Config{})
	addr := strings.TrimPrefix(base, "http://")
	faults := []string{"", mock.FaultRateLimit, mock.FaultServerError, mock.FaultOverloaded, mock.FaultMalformed, mock.FaultStreamCut}
	for _, anthropic := range []bool{false, true} {
		for _, stream := range []bool{false, true} {
			for _, fault := range faults {
				m.ClearFaults()
				if fault != "" {
					if err := m.AddFault(mock.Rule{Fault: fault, Count: 1}); err != nil {
						t.Fatal(err)
					}
				}
				raw := fuzzMockAnswer(t, addr, anthropic, stream)
				name := fmt.Sprintf("mock-%s-%s-%s", map[bool]string{false: "openai", true: "anthropic"}[anthropic],
					map[bool]string{false: "plain", true: "stream"}[stream], map[bool]string{true: "ok", false: fault}[fault == ""])
				fuzzseed.Write(t, "FuzzAdapterAnswers", name, anthropic, stream, raw)
				_, body, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
				resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if resp.TransferEncoding != nil {
					body, _ = io.ReadAll(resp.Body)
				}
				_ = resp.Body.Close()
				switch {
				case resp.StatusCode != 200:
					fuzzseed.Write(t, "FuzzStatusError", name, resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Retry-After-Ms"), body)
				case stream && anthropic:
					fuzzseed.Write(t, "FuzzParseAnthropicStream", name, body)
				case stream:
					fuzzseed.Write(t, "FuzzParseOpenAIStream", name, body)
				case anthropic:
					fuzzseed.Write(t, "FuzzFromAnthropic", name, body)
				default:
					fuzzseed.Write(t, "FuzzParseOpenAIResponse", name, body)
				}
			}
		}
	}
}

// fuzzMockAnswer sends one chat request to the mock and returns its whole
// raw answer.
func fuzzMockAnswer(t *testing.T, addr string, anthropic, stream bool) []byte {
	t.Helper()
	path, body, auth := "/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"seed the fuzzer"}]`, "Authorization: Bearer "+testOpenAIKey
	if anthropic {
		path, body, auth = "/v1/messages", `{"model":"claude-3-5-sonnet","max_tokens":50,"messages":[{"role":"user","content":"seed the fuzzer"}]`, "x-api-key: "+testAnthropicKey+"\r\nanthropic-version: 2023-06-01"
	}
	if stream {
		body += `,"stream":true`
	}
	body += "}"
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: mock\r\nConnection: close\r\nContent-Type: application/json\r\n%s\r\nContent-Length: %d\r\n\r\n%s", path, auth, len(body), body)
	raw, _ := io.ReadAll(c)
	if len(raw) == 0 {
		t.Fatalf("no answer from %s", path)
	}
	return raw
}

// TestOpenAIAnswerNeedsALiteralChoicesKey: encoding/json matches object keys
// without regard to case, so a parser built on it takes {"Choices":[…]} for a
// chat.completion, and the pipeline, which forwards the body as it came
// (Raw), then answers a 200 in which a case-sensitive client (OpenAI's SDKs)
// finds no "choices". FuzzHandler found it against a copy of the
// encoding/json parser (pipeline/testdata/fuzz/FuzzHandler/f2cf767fe341c931);
// the gjson parser of 19cecd6 reads keys literally. This keeps it so.
func TestOpenAIAnswerNeedsALiteralChoicesKey(t *testing.T) {
	for _, body := range []string{
		`{"id":"chatcmpl-1","object":"chat.completion","Choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`,
		`{"id":"chatcmpl-1","object":"chat.completion","CHOICES":[]}`,
	} {
		cr, err := parseOpenAIResponse([]byte(body))
		if err != nil {
			continue
		}
		var literal map[string]json.RawMessage
		if json.Unmarshal(cr.Raw, &literal) != nil || literal["choices"] == nil {
			t.Errorf("accepted as a completion, and forwarded without a \"choices\" key: %s", cr.Raw)
		}
	}
}

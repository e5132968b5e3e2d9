package mock_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/llm-gateway/gateway/mock"
)

func openaiClient(t testing.TB, base string, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(base + "/v1/"),
		option.WithAPIKey("sk-test"),
		option.WithMaxRetries(0),
		option.WithHTTPClient(httpClient(t)),
	}, opts...)...)
}

func oaParams(text string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    "gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("be brief"), openai.UserMessage(text)},
	}
}

func TestOpenAISDKAcceptsPlainCall(t *testing.T) {
	_, base := startMock(t, mock.Config{})
	c := openaiClient(t, base)
	var raw *http.Response
	got, err := c.Chat.Completions.New(context.Background(), oaParams("hello there world"),
		option.WithResponseInto(&raw), option.WithHeader("X-Request-ID", "req_from_test"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got.ID, "chatcmpl-") || got.Object != "chat.completion" || got.Model != "gpt-4o" || got.Created == 0 {
		t.Errorf("envelope = id %q object %q model %q created %d", got.ID, got.Object, got.Model, got.Created)
	}
	if len(got.Choices) != 1 {
		t.Fatalf("choices = %d, want 1", len(got.Choices))
	}
	ch := got.Choices[0]
	if ch.Message.Content != "Mock reply to: hello there world" || ch.FinishReason != "stop" || ch.Message.Role != "assistant" {
		t.Errorf("choice = %q finish %q role %q", ch.Message.Content, ch.FinishReason, ch.Message.Role)
	}
	// "be brief" + "hello there world" = 5 words in; the reply is 6 words.
	if u := got.Usage; u.PromptTokens != 5 || u.CompletionTokens != 6 || u.TotalTokens != 11 {
		t.Errorf("usage = %+v, want 5/6/11", u)
	}
	if id := raw.Header.Get("x-request-id"); id != "req_from_test" {
		t.Errorf("x-request-id = %q, want the incoming one echoed", id)
	}
}

func TestOpenAISDKAcceptsStreamWithUsage(t *testing.T) {
	_, base := startMock(t, mock.Config{})
	c := openaiClient(t, base)
	p := oaParams("stream me please")
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	st := c.Chat.Completions.NewStreaming(context.Background(), p)
	var acc openai.ChatCompletionAccumulator
	chunks, lastUsage := 0, int64(0)
	for st.Next() {
		chunk := st.Current()
		acc.AddChunk(chunk)
		chunks++
		lastUsage = chunk.Usage.TotalTokens
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if got := acc.Choices[0].Message.Content; got != "Mock reply to: stream me please" {
		t.Errorf("content = %q", got)
	}
	if acc.Choices[0].FinishReason != "stop" {
		t.Errorf("finish = %q", acc.Choices[0].FinishReason)
	}
	// role chunk + 6 words + finish chunk + usage chunk.
	if chunks != 9 {
		t.Errorf("chunks = %d, want 9", chunks)
	}
	if lastUsage != 5+6 || acc.Usage.CompletionTokens != 6 {
		t.Errorf("usage: last chunk total %d, accumulated %+v", lastUsage, acc.Usage)
	}
}

func TestOpenAISDKSeesEveryFinishReason(t *testing.T) {
	tool := openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "lookup"})
	tests := []struct {
		name       string
		params     func() openai.ChatCompletionNewParams
		wantText   string
		wantFinish string
		wantTool   string
	}{
		{"max_tokens truncates to length", func() openai.ChatCompletionNewParams {
			p := oaParams("one two three four")
			p.MaxCompletionTokens = openai.Int(4)
			return p
		}, "Mock reply to: one", "length", ""},
		{"stop cuts at the first occurrence", func() openai.ChatCompletionNewParams {
			p := oaParams("alpha END beta END")
			p.Stop = openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"beta", "END"}}
			return p
		}, "Mock reply to: alpha ", "stop", ""},
		{"[tool] with tools calls the tool", func() openai.ChatCompletionNewParams {
			p := oaParams("find it [tool]")
			p.Tools = []openai.ChatCompletionToolUnionParam{tool}
			return p
		}, "", "tool_calls", "lookup"},
		{"[refuse] is content_filter", func() openai.ChatCompletionNewParams {
			return oaParams("do it [refuse]")
		}, "Mock refusal.", "content_filter", ""},
	}
	_, base := startMock(t, mock.Config{})
	c := openaiClient(t, base)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Chat.Completions.New(context.Background(), tt.params())
			if err != nil {
				t.Fatal(err)
			}
			ch := got.Choices[0]
			if ch.Message.Content != tt.wantText || ch.FinishReason != tt.wantFinish {
				t.Errorf("whole: %q finish %q, want %q finish %q", ch.Message.Content, ch.FinishReason, tt.wantText, tt.wantFinish)
			}
			if tt.wantTool != "" {
				if len(ch.Message.ToolCalls) != 1 || ch.Message.ToolCalls[0].Function.Name != tt.wantTool ||
					ch.Message.ToolCalls[0].Function.Arguments != `{"query":"find it [tool]"}` || !strings.HasPrefix(ch.Message.ToolCalls[0].ID, "call_") {
					t.Errorf("tool calls = %+v", ch.Message.ToolCalls)
				}
			}

			st := c.Chat.Completions.NewStreaming(context.Background(), tt.params())
			var acc openai.ChatCompletionAccumulator
			for st.Next() {
				acc.AddChunk(st.Current())
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			sc := acc.Choices[0]
			if sc.Message.Content != tt.wantText || sc.FinishReason != tt.wantFinish {
				t.Errorf("streamed: %q finish %q, want %q finish %q", sc.Message.Content, sc.FinishReason, tt.wantText, tt.wantFinish)
			}
			if tt.wantTool != "" && (len(sc.Message.ToolCalls) != 1 || sc.Message.ToolCalls[0].Function.Arguments != `{"query":"find it [tool]"}`) {
				t.Errorf("streamed tool calls = %+v", sc.Message.ToolCalls)
			}
		})
	}
}

// TestOpenAISDKSeesEachFault drives every fault kind through the SDK, whole
// and streamed, and checks the error the SDK reports.
func TestOpenAISDKSeesEachFault(t *testing.T) {
	tests := []struct {
		name   string
		rule   mock.Rule
		stream bool
		check  func(t *testing.T, err error, elapsed time.Duration)
	}{
		{"rate_limit is a 429 with retry headers", mock.Rule{Fault: mock.FaultRateLimit, RetryAfterS: 2}, false, oaWantAPIError(429, "requests", "rate_limit_exceeded", "2", "2000")},
		{"rate_limit on a stream is a 429 before any event", mock.Rule{Fault: mock.FaultRateLimit}, true, oaWantAPIError(429, "requests", "rate_limit_exceeded", "1", "1000")},
		{"server_error defaults to 500", mock.Rule{Fault: mock.FaultServerError}, false, oaWantAPIError(500, "server_error", "", "", "")},
		{"server_error takes its status", mock.Rule{Fault: mock.FaultServerError, Status: 502}, true, oaWantAPIError(502, "server_error", "", "", "")},
		{"overloaded is OpenAI's 503", mock.Rule{Fault: mock.FaultOverloaded}, false, oaWantAPIError(503, "server_error", "", "", "")},
		{"malformed body fails to parse", mock.Rule{Fault: mock.FaultMalformed}, false, wantParseError},
		{"malformed stream event fails to parse", mock.Rule{Fault: mock.FaultMalformed}, true, wantParseError},
		{"reset is a connection reset", mock.Rule{Fault: mock.FaultReset}, false, wantReset},
		{"reset on a stream is a connection reset", mock.Rule{Fault: mock.FaultReset}, true, wantReset},
		{"hang never answers", mock.Rule{Fault: mock.FaultHang}, false, wantDeadline},
		{"stream_cut ends in an unexpected EOF", mock.Rule{Fault: mock.FaultStreamCut}, true, wantUnexpectedEOF},
		{"timeout answers after delay_ms", mock.Rule{Fault: mock.FaultTimeout, DelayMS: 50}, false, wantLateSuccess(50 * time.Millisecond)},
		{"timeout delays a stream too", mock.Rule{Fault: mock.FaultTimeout, DelayMS: 50}, true, wantLateSuccess(50 * time.Millisecond)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, base := startMock(t, mock.Config{})
			c := openaiClient(t, base)
			tt.rule.Provider, tt.rule.Count = mock.ProviderOpenAI, 1
			addFault(t, s, tt.rule)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			var err error
			if tt.stream {
				st := c.Chat.Completions.NewStreaming(ctx, oaParams("fault please"))
				events := 0
				for st.Next() {
					events++
				}
				err = st.Err()
				if tt.rule.Fault == mock.FaultStreamCut && events == 0 {
					t.Errorf("stream_cut sent no event before cutting")
				}
			} else {
				_, err = c.Chat.Completions.New(ctx, oaParams("fault please"))
			}
			tt.check(t, err, time.Since(start))
			if got := s.Stats().Outcome(mock.ProviderOpenAI, tt.rule.Fault); got != 1 {
				t.Errorf("stats outcome %s = %d, want 1", tt.rule.Fault, got)
			}
			if len(s.Faults()) != 0 {
				t.Errorf("rule not consumed: %+v", s.Faults())
			}
		})
	}
}

func oaWantAPIError(status int, typ, code, retryAfter, retryAfterMS string) func(*testing.T, error, time.Duration) {
	return func(t *testing.T, err error, _ time.Duration) {
		t.Helper()
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("err = %v (%T), want *openai.Error", err, err)
		}
		if apiErr.StatusCode != status || apiErr.Type != typ || apiErr.Code != code {
			t.Errorf("error = %d %q %q, want %d %q %q", apiErr.StatusCode, apiErr.Type, apiErr.Code, status, typ, code)
		}
		if apiErr.Message == "" {
			t.Errorf("error has no message")
		}
		h := apiErr.Response.Header
		if h.Get("retry-after") != retryAfter || h.Get("retry-after-ms") != retryAfterMS {
			t.Errorf("retry-after %q, retry-after-ms %q, want %q, %q", h.Get("retry-after"), h.Get("retry-after-ms"), retryAfter, retryAfterMS)
		}
		if h.Get("x-request-id") == "" {
			t.Errorf("error answer has no x-request-id")
		}
	}
}

func wantParseError(t *testing.T, err error, _ time.Duration) {
	t.Helper()
	t.Logf("err = %v", err)
	var syntaxErr *json.SyntaxError
	if !errors.As(err, &syntaxErr) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("err = %v (%T), want a JSON parse error", err, err)
	}
}

func wantReset(t *testing.T, err error, _ time.Duration) {
	t.Helper()
	t.Logf("err = %v", err)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("err = %v (%T), want a connection reset", err, err)
	}
}

func wantDeadline(t *testing.T, err error, _ time.Duration) {
	t.Helper()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v (%T), want the client's deadline", err, err)
	}
}

func wantUnexpectedEOF(t *testing.T, err error, _ time.Duration) {
	t.Helper()
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("err = %v (%T), want io.ErrUnexpectedEOF", err, err)
	}
}

func wantLateSuccess(d time.Duration) func(*testing.T, error, time.Duration) {
	return func(t *testing.T, err error, elapsed time.Duration) {
		t.Helper()
		if err != nil {
			t.Fatalf("err = %v, want a late success", err)
		}
		if elapsed < d {
			t.Errorf("answered after %v, want at least %v", elapsed, d)
		}
	}
}

package mock_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/llm-gateway/gateway/mock"
)

func anthropicClient(t testing.TB, base string, opts ...option.RequestOption) anthropic.Client {
	return anthropic.NewClient(append([]option.RequestOption{
		option.WithBaseURL(base),
		option.WithAPIKey("sk-ant-test"),
		option.WithMaxRetries(0),
		option.WithHTTPClient(httpClient(t)),
	}, opts...)...)
}

func anParams(text string) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model:     "claude-3-5-sonnet",
		MaxTokens: 256,
		System:    []anthropic.TextBlockParam{{Text: "be brief"}},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(text))},
	}
}

func TestAnthropicSDKAcceptsPlainCall(t *testing.T) {
	_, base := startMock(t, mock.Config{})
	c := anthropicClient(t, base)
	var raw *http.Response
	got, err := c.Messages.New(context.Background(), anParams("hello there world"), option.WithResponseInto(&raw))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got.ID, "msg_") || got.Model != "claude-3-5-sonnet" || got.Role != "assistant" || got.Type != "message" {
		t.Errorf("envelope = %q %q %q %q", got.ID, got.Model, got.Role, got.Type)
	}
	if len(got.Content) != 1 || got.Content[0].Type != "text" || got.Content[0].Text != "Mock reply to: hello there world" {
		t.Errorf("content = %+v", got.Content)
	}
	if got.StopReason != anthropic.StopReasonEndTurn || got.StopSequence != "" {
		t.Errorf("stop = %q %q", got.StopReason, got.StopSequence)
	}
	if got.Usage.InputTokens != 5 || got.Usage.OutputTokens != 6 {
		t.Errorf("usage = %d in, %d out; want 5, 6", got.Usage.InputTokens, got.Usage.OutputTokens)
	}
	if !strings.HasPrefix(raw.Header.Get("request-id"), "req_") {
		t.Errorf("request-id = %q", raw.Header.Get("request-id"))
	}
	if _, err := time.Parse(time.RFC3339, raw.Header.Get("anthropic-ratelimit-requests-reset")); err != nil {
		t.Errorf("anthropic-ratelimit-requests-reset: %v", err)
	}
}

func TestAnthropicSDKAcceptsStream(t *testing.T) {
	_, base := startMock(t, mock.Config{})
	c := anthropicClient(t, base)
	st := c.Messages.NewStreaming(context.Background(), anParams("stream me please"))
	var msg anthropic.Message
	var types []string
	for st.Next() {
		ev := st.Current()
		types = append(types, ev.Type)
		if err := msg.Accumulate(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if len(msg.Content) != 1 || msg.Content[0].Text != "Mock reply to: stream me please" {
		t.Errorf("content = %+v", msg.Content)
	}
	if msg.StopReason != anthropic.StopReasonEndTurn || msg.Usage.InputTokens != 5 || msg.Usage.OutputTokens != 6 {
		t.Errorf("stop %q usage %d/%d", msg.StopReason, msg.Usage.InputTokens, msg.Usage.OutputTokens)
	}
	want := "message_start content_block_start " + strings.Repeat("content_block_delta ", 6) + "content_block_stop message_delta message_stop"
	if got := strings.Join(types, " "); got != want {
		t.Errorf("events (ping is swallowed by the SDK):\n got %s\nwant %s", got, want)
	}
}

func TestAnthropicSDKSeesEveryStopReason(t *testing.T) {
	tool := anthropic.ToolUnionParamOfTool(anthropic.ToolInputSchemaParam{Properties: map[string]any{"query": map[string]any{"type": "string"}}}, "lookup")
	tests := []struct {
		name     string
		params   func() anthropic.MessageNewParams
		wantText string
		wantStop anthropic.StopReason
		wantSeq  string
		wantTool string
	}{
		{"max_tokens truncates", func() anthropic.MessageNewParams {
			p := anParams("one two three four")
			p.MaxTokens = 4
			return p
		}, "Mock reply to: one", anthropic.StopReasonMaxTokens, "", ""},
		{"stop_sequences cut at the first occurrence", func() anthropic.MessageNewParams {
			p := anParams("alpha END beta END")
			p.StopSequences = []string{"beta", "END"}
			return p
		}, "Mock reply to: alpha ", anthropic.StopReasonStopSequence, "END", ""},
		{"[tool] with tools is tool_use", func() anthropic.MessageNewParams {
			p := anParams("find it [tool]")
			p.Tools = []anthropic.ToolUnionParam{tool}
			return p
		}, "", anthropic.StopReasonToolUse, "", "lookup"},
		{"[refuse] is refusal", func() anthropic.MessageNewParams {
			return anParams("do it [refuse]")
		}, "Mock refusal.", anthropic.StopReasonRefusal, "", ""},
	}
	_, base := startMock(t, mock.Config{})
	c := anthropicClient(t, base)
	check := func(t *testing.T, how string, m *anthropic.Message, wantText string, wantStop anthropic.StopReason, wantSeq, wantTool string) {
		t.Helper()
		if m.StopReason != wantStop || m.StopSequence != wantSeq {
			t.Errorf("%s: stop %q %q, want %q %q", how, m.StopReason, m.StopSequence, wantStop, wantSeq)
		}
		if len(m.Content) != 1 {
			t.Fatalf("%s: content = %+v", how, m.Content)
		}
		b := m.Content[0]
		if wantTool != "" {
			if b.Type != "tool_use" || b.Name != wantTool || !strings.HasPrefix(b.ID, "toolu_") || string(b.Input) != `{"query":"find it [tool]"}` {
				t.Errorf("%s: tool_use block = type %q name %q id %q input %s", how, b.Type, b.Name, b.ID, b.Input)
			}
			return
		}
		if b.Type != "text" || b.Text != wantText {
			t.Errorf("%s: text = %q, want %q", how, b.Text, wantText)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Messages.New(context.Background(), tt.params())
			if err != nil {
				t.Fatal(err)
			}
			check(t, "whole", got, tt.wantText, tt.wantStop, tt.wantSeq, tt.wantTool)

			st := c.Messages.NewStreaming(context.Background(), tt.params())
			var msg anthropic.Message
			for st.Next() {
				if err := msg.Accumulate(st.Current()); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			check(t, "streamed", &msg, tt.wantText, tt.wantStop, tt.wantSeq, tt.wantTool)
		})
	}
}

func TestAnthropicSDKSeesEachFault(t *testing.T) {
	tests := []struct {
		name   string
		rule   mock.Rule
		stream bool
		check  func(t *testing.T, err error, elapsed time.Duration)
	}{
		{"rate_limit is a 429 with retry headers", mock.Rule{Fault: mock.FaultRateLimit, RetryAfterS: 3}, false, anWantAPIError(429, anthropic.ErrorTypeRateLimitError, "3", "3000")},
		{"rate_limit on a stream is a 429 before any event", mock.Rule{Fault: mock.FaultRateLimit}, true, anWantAPIError(429, anthropic.ErrorTypeRateLimitError, "1", "1000")},
		{"server_error defaults to 500 api_error", mock.Rule{Fault: mock.FaultServerError}, false, anWantAPIError(500, anthropic.ErrorTypeAPIError, "", "")},
		{"server_error 504 is timeout_error", mock.Rule{Fault: mock.FaultServerError, Status: 504}, true, anWantAPIError(504, anthropic.ErrorTypeTimeoutError, "", "")},
		{"overloaded is a 529", mock.Rule{Fault: mock.FaultOverloaded}, false, anWantAPIError(529, anthropic.ErrorTypeOverloadedError, "", "")},
		{"overloaded on a stream is a 529", mock.Rule{Fault: mock.FaultOverloaded}, true, anWantAPIError(529, anthropic.ErrorTypeOverloadedError, "", "")},
		{"malformed body fails to parse", mock.Rule{Fault: mock.FaultMalformed}, false, wantParseError},
		{"malformed stream event fails to parse", mock.Rule{Fault: mock.FaultMalformed}, true, wantParseError},
		{"reset is a connection reset", mock.Rule{Fault: mock.FaultReset}, false, wantReset},
		{"hang never answers", mock.Rule{Fault: mock.FaultHang}, true, wantDeadline},
		{"stream_cut ends in an unexpected EOF", mock.Rule{Fault: mock.FaultStreamCut}, true, wantUnexpectedEOF},
		{"timeout answers after delay_ms", mock.Rule{Fault: mock.FaultTimeout, DelayMS: 50}, false, wantLateSuccess(50 * time.Millisecond)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, base := startMock(t, mock.Config{})
			c := anthropicClient(t, base)
			tt.rule.Provider, tt.rule.Count = mock.ProviderAnthropic, 1
			addFault(t, s, tt.rule)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			var err error
			if tt.stream {
				st := c.Messages.NewStreaming(ctx, anParams("fault please"))
				events := 0
				for st.Next() {
					events++
				}
				err = st.Err()
				if tt.rule.Fault == mock.FaultStreamCut && events == 0 {
					t.Errorf("stream_cut sent no event before cutting")
				}
			} else {
				_, err = c.Messages.New(ctx, anParams("fault please"))
			}
			tt.check(t, err, time.Since(start))
			if got := s.Stats().Outcome(mock.ProviderAnthropic, tt.rule.Fault); got != 1 {
				t.Errorf("stats outcome %s = %d, want 1", tt.rule.Fault, got)
			}
		})
	}
}

func anWantAPIError(status int, typ anthropic.ErrorType, retryAfter, retryAfterMS string) func(*testing.T, error, time.Duration) {
	return func(t *testing.T, err error, _ time.Duration) {
		t.Helper()
		var apiErr *anthropic.Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("err = %v (%T), want *anthropic.Error", err, err)
		}
		if apiErr.StatusCode != status || apiErr.Type() != typ {
			t.Errorf("error = %d %q, want %d %q", apiErr.StatusCode, apiErr.Type(), status, typ)
		}
		if !strings.HasPrefix(apiErr.RequestID, "req_") || apiErr.Message == "" {
			t.Errorf("request id %q, message %q", apiErr.RequestID, apiErr.Message)
		}
		h := apiErr.Response.Header
		if h.Get("retry-after") != retryAfter || h.Get("retry-after-ms") != retryAfterMS {
			t.Errorf("retry-after %q, retry-after-ms %q, want %q, %q", h.Get("retry-after"), h.Get("retry-after-ms"), retryAfter, retryAfterMS)
		}
	}
}

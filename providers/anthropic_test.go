package providers

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/llm-gateway/gateway/mock"
)

// Translated requests must pass the mock's copy of Anthropic's validation,
// and its answers must come back as OpenAI answers, for every finish reason.
func TestAnthropicRoundTripsThroughTheMock(t *testing.T) {
	srv, base := startMock(t, mock.Config{})
	p := newProvider(t, KindAnthropic, base)
	tests := []struct {
		name       string
		body       string
		wantText   string
		wantFinish string
		// what the mock must have received
		wantSent func(t *testing.T, sent map[string]any)
	}{
		{"system and developer messages, default max_tokens",
			`{"model":"x","messages":[{"role":"system","content":"Be brief."},{"role":"developer","content":"Be kind."},{"role":"user","content":"hello world"}]}`,
			"Mock reply to: hello world", "stop",
			func(t *testing.T, sent map[string]any) {
				if sent["system"] != "Be brief.\n\nBe kind." || sent["max_tokens"] != float64(1024) {
					t.Errorf("sent %v", sent)
				}
			}},
		{"temperature 1.7 is clamped to 1 and accepted",
			`{"model":"x","messages":[{"role":"user","content":"warm"}],"temperature":1.7,"top_p":0.5}`,
			"Mock reply to: warm", "stop",
			func(t *testing.T, sent map[string]any) {
				if sent["temperature"] != float64(1) || sent["top_p"] != 0.5 {
					t.Errorf("sent %v", sent)
				}
			}},
		{"stop sequence ends with stop",
			`{"model":"x","messages":[{"role":"user","content":"one END two"}],"stop":["END","\n"]}`,
			"Mock reply to: one ", "stop", nil},
		{"max_tokens ends with length",
			`{"model":"x","messages":[{"role":"user","content":"a b c d e f"}],"max_completion_tokens":4}`,
			"Mock reply to: a", "length",
			func(t *testing.T, sent map[string]any) {
				if sent["max_tokens"] != float64(4) {
					t.Errorf("sent %v", sent)
				}
			}},
		{"refusal ends with content_filter",
			`{"model":"x","messages":[{"role":"user","content":"do it [refuse]"}]}`,
			"Mock refusal.", "content_filter", nil},
		{"tool use ends with tool_calls",
			`{"model":"x","messages":[{"role":"user","content":"find [tool]"}],"tools":[{"type":"function","function":{"name":"search","description":"d","parameters":{"type":"object","properties":{"query":{"type":"string"}}}}}],"tool_choice":"auto"}`,
			"", "tool_calls", nil},
		{"a tool round trip is accepted",
			`{"model":"x","messages":[{"role":"user","content":"find [tool]"},
				{"role":"assistant","content":null,"tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"search","arguments":"{\"query\":\"x\"}"}}]},
				{"role":"tool","tool_call_id":"toolu_1","content":"found it"}],
			  "tools":[{"type":"function","function":{"name":"search","parameters":{"type":"object"}}}]}`,
			"Mock reply to: find [tool]", "stop", nil},
		{"consecutive user turns and a prefill",
			`{"model":"x","messages":[{"role":"user","content":"first"},{"role":"user","content":[{"type":"text","text":"second"}]},{"role":"assistant","content":"Sure:"}]}`,
			"Mock reply to: first second", "stop", nil},
		{"user becomes metadata.user_id",
			`{"model":"x","messages":[{"role":"user","content":"hi"}],"user":"u-1","seed":3,"presence_penalty":0.5}`,
			"Mock reply to: hi", "stop",
			func(t *testing.T, sent map[string]any) {
				if md, _ := sent["metadata"].(map[string]any); md["user_id"] != "u-1" || sent["seed"] != nil {
					t.Errorf("sent %v", sent)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.Reset()
			resp, err := p.Complete(context.Background(), decodeRequest(t, tt.body), Call{Model: "claude-3-5-sonnet", RequestID: "req_a", Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			c := resp.Choices[0]
			if resp.Text() != tt.wantText || c.FinishReason != tt.wantFinish {
				t.Errorf("got %q %q, want %q %q", resp.Text(), c.FinishReason, tt.wantText, tt.wantFinish)
			}
			if tt.wantFinish == "tool_calls" {
				var calls []openAIToolCall
				if err := json.Unmarshal(c.Message.ToolCalls, &calls); err != nil || len(calls) != 1 || calls[0].Function.Name != "search" || !json.Valid([]byte(calls[0].Function.Arguments)) {
					t.Errorf("tool calls %s", c.Message.ToolCalls)
				}
			}
			if !strings.HasPrefix(resp.ID, "msg_") || resp.Object != "chat.completion" || resp.Model != "claude-3-5-sonnet" ||
				resp.Created == 0 || resp.Usage == nil || resp.Usage.PromptTokens == 0 || resp.Usage.CompletionTokens == 0 ||
				resp.Usage.TotalTokens != resp.Usage.PromptTokens+resp.Usage.CompletionTokens {
				t.Errorf("got %+v usage %+v", resp, resp.Usage)
			}
			log := srv.Log()
			if len(log) != 1 || log[0].Outcome != mock.OutcomeOK {
				t.Fatalf("log %+v", log)
			}
			if tt.wantSent != nil {
				var sent map[string]any
				if err := json.Unmarshal([]byte(log[0].Body), &sent); err != nil {
					t.Fatal(err)
				}
				tt.wantSent(t, sent)
			}
		})
	}
}

func TestAnthropicRefusesUntranslatableRequestsWithoutCalling(t *testing.T) {
	srv, base := startMock(t, mock.Config{})
	p := newProvider(t, KindAnthropic, base)
	req := decodeRequest(t, `{"model":"x","messages":[{"role":"user","content":"hi"}],"n":3}`)
	_, err := p.Complete(context.Background(), req, Call{Model: "claude"})
	pe := checkError(t, err, ClassInvalid)
	if pe.Param != "n" || pe.Provider != KindAnthropic || pe.Status != 0 {
		t.Errorf("got %+v", pe)
	}
	if _, err := p.Stream(context.Background(), req, Call{Model: "claude"}); err == nil {
		t.Error("stream accepted n=3")
	}
	if n := srv.Stats().Requests(mock.ProviderAnthropic); n != 0 {
		t.Errorf("%d requests reached the mock", n)
	}
}

func TestAnthropicStreamAgainstTheMock(t *testing.T) {
	srv, base := startMock(t, mock.Config{})
	p := newProvider(t, KindAnthropic, base)
	finishes := []struct {
		name, body, wantText, wantFinish string
	}{
		{"end_turn", `{"model":"x","messages":[{"role":"system","content":"S"},{"role":"user","content":"stream this reply"}]}`, "Mock reply to: stream this reply", "stop"},
		{"max_tokens", `{"model":"x","messages":[{"role":"user","content":"a b c d e"}],"max_tokens":4}`, "Mock reply to: a", "length"},
		{"stop_sequence", `{"model":"x","messages":[{"role":"user","content":"x HALT y"}],"stop":"HALT"}`, "Mock reply to: x ", "stop"},
		{"refusal", `{"model":"x","messages":[{"role":"user","content":"[refuse]"}]}`, "Mock refusal.", "content_filter"},
		{"tool_use", `{"model":"x","messages":[{"role":"user","content":"[tool] now"}],"tools":[{"type":"function","function":{"name":"lookup","parameters":{"type":"object"}}}]}`, "", "tool_calls"},
	}
	for _, tt := range finishes {
		t.Run(tt.name, func(t *testing.T) {
			s, err := p.Stream(context.Background(), decodeRequest(t, tt.body), Call{Model: "claude-3-5-sonnet", Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			chunks := drain(t, s, time.Second)
			text, finish := streamText(chunks)
			if text != tt.wantText || finish != tt.wantFinish {
				t.Errorf("got %q %q, want %q %q", text, finish, tt.wantText, tt.wantFinish)
			}
			first, last := chunks[0], chunks[len(chunks)-1]
			if first.Choices[0].Delta.Role != "assistant" || first.Choices[0].Delta.Content == nil || !strings.HasPrefix(first.ID, "msg_") {
				t.Errorf("first chunk %+v", first)
			}
			if last.Usage == nil || last.Usage.PromptTokens == 0 || last.Usage.CompletionTokens == 0 {
				t.Errorf("last chunk %+v", last)
			}
			for _, c := range chunks {
				if c.ID != first.ID || c.Raw != nil || c.Model != "claude-3-5-sonnet" {
					t.Errorf("chunk %+v", c)
				}
			}
			if tt.wantFinish == "tool_calls" {
				var args strings.Builder
				for _, c := range chunks {
					var tcs []toolCallDelta
					if len(c.Choices[0].Delta.ToolCalls) > 0 {
						if err := json.Unmarshal(c.Choices[0].Delta.ToolCalls, &tcs); err != nil {
							t.Fatal(err)
						}
						args.WriteString(tcs[0].Function.Arguments)
					}
				}
				if !json.Valid([]byte(args.String())) {
					t.Errorf("tool arguments %q", args.String())
				}
			}
		})
	}
	faults := []struct {
		name   string
		rule   mock.Rule
		atOpen bool
		want   Class
	}{
		{"stream cut mid-stream", mock.Rule{Fault: mock.FaultStreamCut}, false, ClassServer},
		{"malformed event", mock.Rule{Fault: mock.FaultMalformed}, false, ClassMalformed},
		{"overloaded before the stream", mock.Rule{Fault: mock.FaultOverloaded}, true, ClassOverloaded},
		{"server error before the stream", mock.Rule{Fault: mock.FaultServerError, Status: 500}, true, ClassServer},
		{"reset before the stream", mock.Rule{Fault: mock.FaultReset}, true, ClassConnect},
	}
	for _, tt := range faults {
		t.Run(tt.name, func(t *testing.T) {
			srv.Reset()
			rule := tt.rule
			rule.Count = 1
			if err := srv.AddFault(rule); err != nil {
				t.Fatal(err)
			}
			s, err := p.Stream(context.Background(), userRequest("one two three four five six seven eight"), Call{Model: "claude", Timeout: 2 * time.Second})
			if tt.atOpen {
				checkError(t, err, tt.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			n, err := countUntilError(s)
			pe := checkError(t, err, tt.want)
			if tt.want == ClassServer && (n == 0 || pe.Message != "upstream stream ended early") {
				t.Errorf("%d chunks then %v", n, err)
			}
		})
	}
}

func BenchmarkAnthropicComplete(b *testing.B) {
	_, base := startMock(b, mock.Config{})
	p := newProvider(b, KindAnthropic, base)
	req := decodeRequest(b, `{"model":"public","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"benchmark this short prompt"}],"temperature":0.2}`)
	call := Call{Model: "claude-3-5-sonnet", RequestID: "req_bench", Timeout: 5 * time.Second}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := p.Complete(ctx, req, call); err != nil {
			b.Fatal(err)
		}
	}
}

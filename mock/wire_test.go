package mock_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/llm-gateway/gateway/mock"
)

func TestOpenAIAnswerCarriesRequestIDAndRateLimitHeaders(t *testing.T) {
	_, base := startMock(t, mock.Config{})
	c := httpClient(t)
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`

	minted := post(t, c, base+"/v1/chat/completions", body, oaHeaders...)
	if id := minted.header.Get("x-request-id"); !strings.HasPrefix(id, "req_") {
		t.Errorf("minted x-request-id = %q, want req_…", id)
	}
	echoed := post(t, c, base+"/v1/chat/completions", body, append([]string{"X-Request-ID", "gw-123"}, oaHeaders...)...)
	if id := echoed.header.Get("x-request-id"); id != "gw-123" {
		t.Errorf("x-request-id = %q, want the incoming one", id)
	}
	if ct := minted.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	for _, h := range []string{"limit", "remaining", "reset"} {
		for _, what := range []string{"requests", "tokens"} {
			if minted.header.Get("x-ratelimit-"+h+"-"+what) == "" {
				t.Errorf("missing x-ratelimit-%s-%s", h, what)
			}
		}
	}
	if _, err := time.ParseDuration(minted.header.Get("x-ratelimit-reset-requests")); err != nil {
		t.Errorf("x-ratelimit-reset-requests: %v", err)
	}
}

func TestAnthropicAnswerCarriesRequestIDAndRateLimitHeaders(t *testing.T) {
	_, base := startMock(t, mock.Config{})
	c := httpClient(t)
	res := post(t, c, base+"/v1/messages", `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`, anHeaders...)
	if id := res.header.Get("request-id"); !strings.HasPrefix(id, "req_") {
		t.Errorf("request-id = %q", id)
	}
	for _, what := range []string{"requests", "tokens"} {
		for _, h := range []string{"limit", "remaining"} {
			if res.header.Get("anthropic-ratelimit-"+what+"-"+h) == "" {
				t.Errorf("missing anthropic-ratelimit-%s-%s", what, h)
			}
		}
		if _, err := time.Parse(time.RFC3339, res.header.Get("anthropic-ratelimit-"+what+"-reset")); err != nil {
			t.Errorf("anthropic-ratelimit-%s-reset: %v", what, err)
		}
	}
}

// TestOpenAIStreamIsDataOnlySSE reads the wire itself: data lines only, the
// same id on every chunk, "usage":null on each chunk with include_usage, a
// usage chunk with no choices, then [DONE].
func TestOpenAIStreamIsDataOnlySSE(t *testing.T) {
	_, base := startMock(t, mock.Config{})
	res := post(t, httpClient(t), base+"/v1/chat/completions",
		`{"model":"gpt-4o","messages":[{"role":"user","content":"a  b"}],"stream":true,"stream_options":{"include_usage":true}}`, oaHeaders...)
	if ct := res.header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	if !bytes.HasSuffix(res.body, []byte("\n\ndata: [DONE]\n\n")) {
		t.Errorf("stream does not end with data: [DONE]")
	}
	var chunks []map[string]json.RawMessage
	for _, ev := range strings.Split(strings.TrimSuffix(string(res.body), "\n\n"), "\n\n") {
		if !strings.HasPrefix(ev, "data: ") || strings.Contains(ev, "\n") {
			t.Fatalf("event is not one data line: %q", ev)
		}
		if ev == "data: [DONE]" {
			continue
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(strings.TrimPrefix(ev, "data: ")), &m); err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, m)
	}
	var text strings.Builder
	for i, m := range chunks {
		if string(m["id"]) != string(chunks[0]["id"]) || string(m["object"]) != `"chat.completion.chunk"` {
			t.Errorf("chunk %d: id %s object %s", i, m["id"], m["object"])
		}
		if i == len(chunks)-1 {
			if string(m["choices"]) != "[]" || !bytes.Contains(m["usage"], []byte(`"completion_tokens":5`)) {
				t.Errorf("last chunk = choices %s usage %s", m["choices"], m["usage"])
			}
			continue
		}
		if string(m["usage"]) != "null" {
			t.Errorf("chunk %d: usage = %s, want null", i, m["usage"])
		}
		var choices []struct {
			Delta        map[string]any `json:"delta"`
			FinishReason *string        `json:"finish_reason"`
		}
		_ = json.Unmarshal(m["choices"], &choices)
		if i == 0 && (choices[0].Delta["role"] != "assistant" || choices[0].Delta["content"] != "") {
			t.Errorf("first delta = %v", choices[0].Delta)
		}
		if s, ok := choices[0].Delta["content"].(string); ok {
			text.WriteString(s)
		}
		if i == len(chunks)-2 && (choices[0].FinishReason == nil || *choices[0].FinishReason != "stop" || len(choices[0].Delta) != 0) {
			t.Errorf("finish chunk = %s", m["choices"])
		}
	}
	if text.String() != "Mock reply to: a  b" {
		t.Errorf("deltas join to %q (whitespace must survive)", text.String())
	}
}

// TestAnthropicStreamHasAnEventLineForEveryData checks the mandatory event:
// lines, their order and that each names its data's type.
func TestAnthropicStreamHasAnEventLineForEveryData(t *testing.T) {
	_, base := startMock(t, mock.Config{})
	res := post(t, httpClient(t), base+"/v1/messages",
		`{"model":"m","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"x y"}]}`, anHeaders...)
	if ct := res.header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(res.body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		name, ok := strings.CutPrefix(line, "event: ")
		if !ok {
			t.Fatalf("expected an event: line, got %q", line)
		}
		if !sc.Scan() {
			t.Fatal("event without data")
		}
		var data struct{ Type string }
		payload, _ := strings.CutPrefix(sc.Text(), "data: ")
		if err := json.Unmarshal([]byte(payload), &data); err != nil || data.Type != name {
			t.Errorf("event %q has data %q", name, sc.Text())
		}
		names = append(names, name)
	}
	want := "message_start content_block_start ping content_block_delta content_block_delta content_block_delta content_block_delta content_block_delta content_block_stop message_delta message_stop"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("events:\n got %s\nwant %s", got, want)
	}
	if bytes.Contains(res.body, []byte("[DONE]")) {
		t.Error("an Anthropic stream has no [DONE]")
	}
}

func TestRepliesAreDeterministic(t *testing.T) {
	_, base := startMock(t, mock.Config{})
	c := httpClient(t)
	strip := func(b []byte) string {
		var v map[string]any
		_ = json.Unmarshal(b, &v)
		delete(v, "id")
		delete(v, "created")
		out, _ := json.Marshal(v)
		return string(out)
	}
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"part one"},{"type":"text","text":"part two"}]}]}`
	first := strip(post(t, c, base+"/v1/chat/completions", body, oaHeaders...).body)
	second := strip(post(t, c, base+"/v1/chat/completions", body, oaHeaders...).body)
	if first != second {
		t.Errorf("two identical requests got\n%s\n%s", first, second)
	}
	if !strings.Contains(first, `"content":"Mock reply to: part one part two"`) {
		t.Errorf("text parts are not joined by a space: %s", first)
	}
}

func TestLatencyIsAddedBeforeAnswers(t *testing.T) {
	_, base := startMock(t, mock.Config{Latency: 60 * time.Millisecond, Jitter: 20 * time.Millisecond, Seed: 7})
	c := httpClient(t)
	start := time.Now()
	post(t, c, base+"/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, oaHeaders...)
	if d := time.Since(start); d < 60*time.Millisecond {
		t.Errorf("answered after %v, want at least the 60ms latency", d)
	}
	start = time.Now()
	post(t, c, base+"/v1/chat/completions", `{}`, oaHeaders...)
	if d := time.Since(start); d >= 60*time.Millisecond {
		t.Errorf("a validation error took %v; latency applies only to answers from the model", d)
	}
}

func TestOpenAIHonoursN(t *testing.T) {
	_, base := startMock(t, mock.Config{})
	c := httpClient(t)
	res := post(t, c, base+"/v1/chat/completions", `{"model":"gpt-4o","n":2,"messages":[{"role":"user","content":"hi"}]}`, oaHeaders...)
	v := decode(t, res.body)
	if path(v, "choices", 1, "index") != 1.0 || path(v, "choices", 1, "message", "content") != "Mock reply to: hi" || path(v, "usage", "completion_tokens") != 8.0 {
		t.Errorf("n=2 answer: %s", res.body)
	}
	res = post(t, c, base+"/v1/chat/completions", `{"model":"gpt-4o","n":2,"stream":true,"messages":[{"role":"user","content":"hi"}]}`, oaHeaders...)
	if got := strings.Count(string(res.body), `"finish_reason":"stop"`); got != 2 {
		t.Errorf("streamed n=2 has %d finish chunks, want 2", got)
	}
}

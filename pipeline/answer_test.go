package pipeline

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llm-gateway/gateway/providers"
)

// The gateway's fields are JSON strings whatever a provider's configured
// name holds (strconv's Go quoting is not JSON beyond the BMP).
func TestWriteCompletionAddsItsFieldsAsValidJSON(t *testing.T) {
	text := "hi \"there\"\n"
	for _, raw := range []string{
		`{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi \"there\"\n"},"finish_reason":"stop"}]} `,
		`{ }`,
	} {
		var ctx fasthttp.RequestCtx
		res := Result{
			Response: &providers.ChatResponse{Raw: []byte(raw), Choices: []providers.Choice{{Message: providers.AnswerMessage{Content: &text}}}},
			Provider: "prov-😀-\u2028-\U000E0001",
			Attempts: 2,
		}
		writeCompletion(&ctx, "req_abc", res, 1500*time.Millisecond)
		var got map[string]any
		if err := json.Unmarshal(ctx.Response.Body(), &got); err != nil {
			t.Fatalf("not JSON (%v): %s", err, ctx.Response.Body())
		}
		if got["request_id"] != "req_abc" || got["provider"] != res.Provider || got["content"] != text ||
			got["attempts"] != 2.0 || got["total_latency_ms"] != 1500.0 {
			t.Fatalf("fields: %v", got)
		}
		if string(ctx.Response.Header.Peek("X-Request-ID")) != "req_abc" {
			t.Fatal("no X-Request-ID")
		}
	}
}

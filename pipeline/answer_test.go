package pipeline

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llm-gateway/gateway/providers"
)

func TestAppendTimestampMatchesTheLayoutReplayReads(t *testing.T) {
	for _, ts := range []time.Time{
		time.Date(2026, 11, 26, 1, 2, 3, 456789123, time.UTC),
		time.Date(999, 1, 2, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.FixedZone("x", 3600)),
	} {
		want := ts.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
		if got := string(appendTimestamp(nil, ts)); got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

func TestTheStampCacheFormatsLikeAppendTimestamp(t *testing.T) {
	var c stampCache
	base := time.Date(2026, 11, 26, 23, 59, 58, 999_000_000, time.UTC)
	times := []time.Time{time.Date(1969, 12, 31, 23, 59, 59, 500_000_000, time.UTC), time.Unix(0, 0)}
	for i := range 40 {
		times = append(times, base.Add(time.Duration(i)*97*time.Millisecond))
	}
	times = append(times, base.In(time.FixedZone("x", -7200)), base.Add(-time.Hour))
	var wg sync.WaitGroup
	for range 4 { // concurrent lines share one cache
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, ts := range times {
				if got, want := string(c.append(nil, ts)), string(appendTimestamp(nil, ts)); got != want {
					t.Errorf("cache %s, want %s", got, want)
				}
			}
		}()
	}
	wg.Wait()
}

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

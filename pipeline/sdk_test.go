package pipeline_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llm-gateway/gateway/mock"
)

func sdkClient(g *gateway) openai.Client {
	return openai.NewClient(
		option.WithBaseURL(g.url+"/v1/"),
		option.WithAPIKey("sk-test"),
		option.WithMaxRetries(0),
	)
}

func TestOpenAISDKGetsTheCompletionUnchanged(t *testing.T) {
	g := startGateway(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := sdkClient(g)
	for _, provider := range []string{"openai", "anthropic"} {
		if provider == "anthropic" {
			g.fault(mock.Rule{Provider: "openai", Fault: mock.FaultRateLimit, Count: 1})
		}
		resp, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "gpt-4",
			Messages: []openai.ChatCompletionMessageParamUnion{
				openai.SystemMessage("Be brief."),
				openai.UserMessage("Hello from the SDK"),
			},
			MaxTokens: openai.Int(50),
		})
		if err != nil {
			t.Fatalf("%s: %v", provider, err)
		}
		if len(resp.Choices) != 1 || !strings.Contains(resp.Choices[0].Message.Content, "Hello from the SDK") {
			t.Fatalf("%s: choices %+v", provider, resp.Choices)
		}
		if resp.Choices[0].FinishReason != "stop" || resp.Usage.TotalTokens == 0 || resp.Object != "chat.completion" {
			t.Fatalf("%s: finish %q usage %+v object %q", provider, resp.Choices[0].FinishReason, resp.Usage, resp.Object)
		}
		if got := resp.JSON.ExtraFields["provider"].Raw(); got != `"`+provider+`"` {
			t.Fatalf("provider field %s, want %s", got, provider)
		}
	}
}

func TestOpenAISDKSeesTypedErrors(t *testing.T) {
	g := startGateway(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := sdkClient(g)
	_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:       "gpt-4",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		Temperature: openai.Float(3),
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Param != "temperature" || apiErr.Type != "invalid_request_error" {
		t.Fatalf("got %v", err)
	}
}

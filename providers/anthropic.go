package providers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/valyala/fasthttp"
)

// anthropicPath is the Messages endpoint under the base URL.
const anthropicPath = "/v1/messages"

// Anthropic calls the Anthropic Messages API, translating the canonical
// request and answer (translate.go). Safe for concurrent use.
type Anthropic struct {
	name     string
	up       *upstream
	settings ProviderSettings
}

// NewAnthropic builds the adapter for s; zero settings take their defaults.
func NewAnthropic(name string, s ProviderSettings) (*Anthropic, error) {
	up, err := newUpstream(name, s, anthropicPath)
	if err != nil {
		return nil, err
	}
	if s.AnthropicVersion == "" {
		s.AnthropicVersion = DefaultAnthropicVersion
	}
	if s.DefaultMaxTokens <= 0 {
		s.DefaultMaxTokens = DefaultMaxTokens
	}
	up.setHeads("x-api-key", s.APIKey, "anthropic-version", s.AnthropicVersion)
	return &Anthropic{name: name, up: up, settings: s}, nil
}

// Name is the provider's configured name.
func (p *Anthropic) Name() string { return p.name }

// Check says whether req can be translated for Anthropic, without a call; see
// Checker.
func (p *Anthropic) Check(req *ChatRequest) error {
	if _, err := anthropicRequestOf(req, "", p.settings, req.Stream); err != nil {
		return p.untranslatable(err)
	}
	return nil
}

// untranslatable is the *Error of a request the translation refused.
func (p *Anthropic) untranslatable(err error) error {
	var e *Error
	if errors.As(err, &e) {
		e.Provider = p.name
		return p.up.redact(e)
	}
	return p.up.fail(ClassInvalid, 0, "the request could not be translated: "+err.Error(), err)
}

// SupportsPrefill reports that Anthropic continues a final assistant message.
func (p *Anthropic) SupportsPrefill() bool { return true }

var (
	_ Prefiller = (*Anthropic)(nil)
	_ Checker   = (*Anthropic)(nil)
)

// Close closes the idle connections; calls in flight finish normally.
func (p *Anthropic) Close() error {
	p.up.close()
	return nil
}

func (p *Anthropic) request(req *ChatRequest, call Call, stream bool) (*fasthttp.Request, error) {
	body, err := toAnthropic(req, call.Model, p.settings, stream)
	if err != nil {
		return nil, p.untranslatable(err)
	}
	r := fasthttp.AcquireRequest()
	p.up.prepare(r, call, body, stream)
	return r, nil
}

// Complete makes one non-streamed call.
func (p *Anthropic) Complete(ctx context.Context, req *ChatRequest, call Call) (*ChatResponse, error) {
	r, err := p.request(req, call, false)
	if err != nil {
		return nil, err
	}
	defer fasthttp.ReleaseRequest(r)
	return p.up.complete(ctx, call, r, func(body []byte) (*ChatResponse, error) {
		return fromAnthropic(body, time.Now().Unix()) // keeps nothing of body
	})
}

// Stream makes one streamed call; Anthropic's events come out as OpenAI
// chunks. See Provider.
func (p *Anthropic) Stream(ctx context.Context, req *ChatRequest, call Call) (Stream, error) {
	r, err := p.request(req, call, true)
	if err != nil {
		return nil, err
	}
	defer fasthttp.ReleaseRequest(r)
	s, err := p.up.openStream(ctx, call, r, newAnthropicStreamDecoder(time.Now().Unix()))
	if err != nil {
		return nil, err
	}
	return s, nil
}

var (
	_ Provider     = (*Anthropic)(nil)
	_ eventDecoder = (*anthropicStreamDecoder)(nil)
)

// toolCallDelta is a tool call increment in a stream chunk.
type toolCallDelta struct {
	Index    int    `json:"index"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// anthropicStreamEvent is the union of Anthropic's stream event payloads.
type anthropicStreamEvent struct {
	Type    string `json:"type"`
	Message *struct {
		ID    string         `json:"id"`
		Model string         `json:"model"`
		Usage anthropicUsage `json:"usage"`
	} `json:"message"`
	Index        int                `json:"index"`
	ContentBlock *anthropicOutBlock `json:"content_block"`
	Delta        *struct {
		Type        string `json:"type"`
		Text        string `json:"text"`
		PartialJSON string `json:"partial_json"`
		StopReason  string `json:"stop_reason"`
	} `json:"delta"`
	Usage *anthropicUsage      `json:"usage"`
	Error *providerErrorDetail `json:"error"`
}

// anthropicStreamDecoder translates Anthropic stream events into OpenAI
// chunks: message_start → the first chunk (role assistant, content ""),
// text deltas → content chunks, tool_use blocks and their input_json deltas
// → tool_calls chunks, message_delta → the chunk with finish_reason and
// usage, message_stop → io.EOF, error → *streamEventError. ping, block stops,
// thinking and unknown events are skipped.
type anthropicStreamDecoder struct {
	created int64
	id      string
	model   string
	usage   anthropicUsage
	tools   map[int]int // Anthropic block index → OpenAI tool call index
}

func newAnthropicStreamDecoder(created int64) *anthropicStreamDecoder {
	return &anthropicStreamDecoder{created: created}
}

func (d *anthropicStreamDecoder) decode(ev sseEvent) (*Chunk, error) {
	name := string(ev.name)
	switch name {
	case "ping", "content_block_stop":
		return nil, nil
	}
	var e anthropicStreamEvent
	if err := json.Unmarshal(ev.data, &e); err != nil {
		return nil, fmt.Errorf("anthropic %s event: %w", name, err)
	}
	if name == "" { // the event: line is mandatory, but the payload says it too
		name = e.Type
	}
	switch name {
	case "message_start":
		if e.Message == nil {
			return nil, fmt.Errorf("anthropic message_start without a message")
		}
		d.id, d.model, d.usage = e.Message.ID, e.Message.Model, e.Message.Usage
		empty := ""
		return d.chunk(Delta{Role: "assistant", Content: &empty}, nil), nil
	case "content_block_start":
		b := e.ContentBlock
		switch {
		case b == nil:
			return nil, nil
		case b.Type == "text" && b.Text != "":
			text := b.Text
			return d.chunk(Delta{Content: &text}, nil), nil
		case b.Type == "tool_use":
			if d.tools == nil {
				d.tools = make(map[int]int)
			}
			k := len(d.tools)
			d.tools[e.Index] = k
			tc := toolCallDelta{Index: k, ID: b.ID, Type: "function"}
			tc.Function.Name = b.Name
			return d.toolChunk(tc)
		}
		return nil, nil
	case "content_block_delta":
		if e.Delta == nil {
			return nil, nil
		}
		switch e.Delta.Type {
		case "text_delta":
			text := e.Delta.Text
			return d.chunk(Delta{Content: &text}, nil), nil
		case "input_json_delta":
			k, ok := d.tools[e.Index]
			if !ok || e.Delta.PartialJSON == "" {
				return nil, nil
			}
			tc := toolCallDelta{Index: k}
			tc.Function.Arguments = e.Delta.PartialJSON
			return d.toolChunk(tc)
		}
		return nil, nil // thinking, signature, citations
	case "message_delta":
		if e.Usage != nil {
			d.usage.OutputTokens = e.Usage.OutputTokens
			if e.Usage.InputTokens > 0 { // newer API versions repeat the input count here
				d.usage.InputTokens = e.Usage.InputTokens
				d.usage.CacheCreationInputTokens = e.Usage.CacheCreationInputTokens
				d.usage.CacheReadInputTokens = e.Usage.CacheReadInputTokens
			}
		}
		stop := ""
		if e.Delta != nil {
			stop = e.Delta.StopReason
		}
		finish := finishReason(stop)
		c := d.chunk(Delta{}, &finish)
		prompt := d.usage.promptTokens()
		c.Usage = &Usage{PromptTokens: prompt, CompletionTokens: d.usage.OutputTokens, TotalTokens: prompt + d.usage.OutputTokens}
		return c, nil
	case "message_stop":
		return nil, io.EOF
	case "error":
		if e.Error == nil {
			return nil, &streamEventError{}
		}
		return nil, &streamEventError{detail: *e.Error}
	}
	return nil, nil
}

func (d *anthropicStreamDecoder) chunk(delta Delta, finish *string) *Chunk {
	return &Chunk{
		ID:      d.id,
		Object:  "chat.completion.chunk",
		Created: d.created,
		Model:   d.model,
		Choices: []ChunkChoice{{Index: 0, Delta: delta, FinishReason: finish}},
	}
}

func (d *anthropicStreamDecoder) toolChunk(tc toolCallDelta) (*Chunk, error) {
	raw, err := json.Marshal([]toolCallDelta{tc})
	if err != nil {
		return nil, err
	}
	return d.chunk(Delta{ToolCalls: raw}, nil), nil
}

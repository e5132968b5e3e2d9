package providers

import (
	"bytes"
	"encoding/json"
	"errors"
)

// ChatRequest is the canonical request: the OpenAI Chat Completions body as
// the client sent it. The validate tags are the OpenAI rules of WIRE.md; the
// pipeline checks them (and the rules that span fields) before any call.
type ChatRequest struct {
	Model               string             `json:"model" validate:"required,max=256"`
	Messages            []Message          `json:"messages" validate:"required,min=1,messages"`
	Temperature         *float64           `json:"temperature,omitempty" validate:"omitnil,gte=0,lte=2"`
	TopP                *float64           `json:"top_p,omitempty" validate:"omitnil,gte=0,lte=1"`
	N                   *int               `json:"n,omitempty" validate:"omitnil,gte=1,lte=128"`
	MaxTokens           *int               `json:"max_tokens,omitempty" validate:"omitnil,gte=1"`
	MaxCompletionTokens *int               `json:"max_completion_tokens,omitempty" validate:"omitnil,gte=1"`
	Stop                Stop               `json:"stop,omitempty" validate:"omitempty,max=4,dive,required"`
	PresencePenalty     *float64           `json:"presence_penalty,omitempty" validate:"omitnil,gte=-2,lte=2"`
	FrequencyPenalty    *float64           `json:"frequency_penalty,omitempty" validate:"omitnil,gte=-2,lte=2"`
	Logprobs            *bool              `json:"logprobs,omitempty" validate:"-"`
	TopLogprobs         *int               `json:"top_logprobs,omitempty" validate:"omitnil,gte=0,lte=20"`
	LogitBias           map[string]float64 `json:"logit_bias,omitempty" validate:"omitempty,dive,gte=-100,lte=100"`
	Seed                *int64             `json:"seed,omitempty" validate:"-"`
	User                string             `json:"user,omitempty" validate:"-"`
	Stream              bool               `json:"stream,omitempty" validate:"-"`
	StreamOptions       *StreamOptions     `json:"stream_options,omitempty" validate:"-"`
	Tools               json.RawMessage    `json:"tools,omitempty" validate:"-"`
	ToolChoice          json.RawMessage    `json:"tool_choice,omitempty" validate:"-"`
	ParallelToolCalls   *bool              `json:"parallel_tool_calls,omitempty" validate:"-"`
	ResponseFormat      json.RawMessage    `json:"response_format,omitempty" validate:"-"`

	// Raw is the body exactly as the client sent it. The OpenAI adapter
	// forwards it, with only the model replaced, so fields this struct does
	// not know pass through unchanged.
	Raw []byte `json:"-" validate:"-"`

	// RawAgrees is set by a decoder that read Raw key by key and saw each
	// top-level key of this struct at most once, so that Raw holds "model"
	// once with the value of Model, "stream" at most once with the value
	// of Stream, and "stream_options" exactly when StreamOptions is set.
	// The OpenAI adapter then forwards Raw without looking for those keys
	// again when the target's model and the streaming mode are the
	// client's. Whoever changes Raw, Model, Stream or StreamOptions after
	// decoding clears it.
	RawAgrees bool `json:"-" validate:"-"`
}

// StreamOptions is the OpenAI stream_options object.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage,omitempty" validate:"-"`
}

// Message is one chat message.
type Message struct {
	Role       string          `json:"role" validate:"-"` // the messages rule of ChatRequest checks every message
	Content    Content         `json:"content" validate:"-"`
	Name       string          `json:"name,omitempty" validate:"-"`
	ToolCalls  json.RawMessage `json:"tool_calls,omitempty" validate:"-"`
	ToolCallID string          `json:"tool_call_id,omitempty" validate:"-"`
}

// Content is a message's content: a string, an array of parts, or null.
type Content struct {
	Text  string        // the string form
	Parts []ContentPart // the array form
	Kind  ContentKind
}

// ContentKind says which JSON form a Content had.
type ContentKind uint8

// The forms of Content.
const (
	ContentAbsent ContentKind = iota // missing or null
	ContentString
	ContentParts
)

// ContentPart is one element of an array content. Parts other than text are
// kept raw so they pass through to OpenAI unchanged.
type ContentPart struct {
	Type string          `json:"type" validate:"required"`
	Text string          `json:"text,omitempty" validate:"-"`
	Raw  json.RawMessage `json:"-" validate:"-"`
}

// PlainText joins the text of a content: the string itself, or the text parts
// in order separated by newlines.
func (c Content) PlainText() string {
	if c.Kind != ContentParts {
		return c.Text
	}
	var b bytes.Buffer
	for _, p := range c.Parts {
		if p.Type != "text" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.Text)
	}
	return b.String()
}

// UnmarshalJSON accepts a string, an array of parts or null.
func (c *Content) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case len(data) == 0 || bytes.Equal(data, []byte("null")):
		*c = Content{}
		return nil
	case data[0] == '"':
		c.Kind = ContentString
		if len(data) >= 2 && data[len(data)-1] == '"' && bytes.IndexByte(data, '\\') < 0 {
			// No escapes: the decoder has already checked the string, so
			// its bytes between the quotes are the text.
			c.Text = string(data[1 : len(data)-1])
			return nil
		}
		return json.Unmarshal(data, &c.Text)
	case data[0] == '[':
		var raws []json.RawMessage
		if err := json.Unmarshal(data, &raws); err != nil {
			return err
		}
		c.Kind = ContentParts
		c.Parts = make([]ContentPart, len(raws))
		for i, raw := range raws {
			var p struct {
				Type string `json:"type"`
				Text string `json:"text"`
			}
			if err := json.Unmarshal(raw, &p); err != nil {
				return errors.New("content parts must be objects")
			}
			c.Parts[i] = ContentPart{Type: p.Type, Text: p.Text, Raw: raw}
		}
		return nil
	default:
		return errors.New("content must be a string, an array of parts or null")
	}
}

// MarshalJSON writes the form the content was read in.
func (c Content) MarshalJSON() ([]byte, error) {
	switch c.Kind {
	case ContentString:
		return json.Marshal(c.Text)
	case ContentParts:
		out := make([]json.RawMessage, len(c.Parts))
		for i, p := range c.Parts {
			if p.Raw != nil {
				out[i] = p.Raw
				continue
			}
			b, err := json.Marshal(struct {
				Type string `json:"type"`
				Text string `json:"text"`
			}{p.Type, p.Text})
			if err != nil {
				return nil, err
			}
			out[i] = b
		}
		return json.Marshal(out)
	default:
		return []byte("null"), nil
	}
}

// Stop is OpenAI's stop: a string or up to four strings.
type Stop []string

// UnmarshalJSON accepts a string, an array of strings or null.
func (s *Stop) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case bytes.Equal(data, []byte("null")):
		*s = nil
		return nil
	case len(data) > 0 && data[0] == '"':
		var one string
		if err := json.Unmarshal(data, &one); err != nil {
			return err
		}
		*s = Stop{one}
		return nil
	default:
		var many []string
		if err := json.Unmarshal(data, &many); err != nil {
			return errors.New("stop must be a string or an array of strings")
		}
		*s = many
		return nil
	}
}

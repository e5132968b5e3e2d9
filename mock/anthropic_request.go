package mock

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/valyala/fasthttp"
)

// Anthropic Messages requests: decoding and validation as the real API does
// them, and the prompt the reply is derived from.

type anRequest struct {
	Model         *string          `json:"model"`
	MaxTokens     *float64         `json:"max_tokens"`
	Messages      []anMessage      `json:"messages"`
	System        content[anBlock] `json:"system"`
	Temperature   *float64         `json:"temperature"`
	TopP          *float64         `json:"top_p"`
	TopK          *float64         `json:"top_k"`
	StopSequences []string         `json:"stop_sequences"`
	Stream        *bool            `json:"stream"`
	Tools         []anTool         `json:"tools"`
	ToolChoice    *anToolChoice    `json:"tool_choice"`
}

type anMessage struct {
	Role    *string          `json:"role"`
	Content content[anBlock] `json:"content"`
}

type anBlock struct {
	Type      *string          `json:"type"`
	Text      *string          `json:"text"`
	ID        *string          `json:"id"`
	Name      *string          `json:"name"`
	Input     json.RawMessage  `json:"input"`
	ToolUseID *string          `json:"tool_use_id"`
	Content   content[anBlock] `json:"content"` // of a tool_result
	Source    json.RawMessage  `json:"source"`
}

type anTool struct {
	Type        *string         `json:"type"`
	Name        *string         `json:"name"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type anToolChoice struct {
	Type *string `json:"type"`
	Name *string `json:"name"`
}

// anError is an answer in Anthropic's error format.
type anError struct {
	status       int
	typ, message string
}

func anInvalid(format string, args ...any) *anError {
	return &anError{fasthttp.StatusBadRequest, "invalid_request_error", fmt.Sprintf(format, args...)}
}

// anDecode parses and validates a request body as the real API does; its
// messages follow the API's "path: problem" style.
func anDecode(body []byte) (*anRequest, *anError) {
	req := new(anRequest)
	if err := json.Unmarshal(body, req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, anInvalid("%s: Input should be %s", te.Field, anWant(te))
		}
		return nil, anInvalid("There was an issue with your request body: it is not valid JSON (%v)", err)
	}
	return req, req.validate()
}

// anWant names the expected type as the API's messages do.
func anWant(te *json.UnmarshalTypeError) string {
	switch w := wantOf(te); w {
	case "an array":
		return "a valid list"
	case "an object":
		return "a valid dictionary"
	case "a valid value":
		return w
	default:
		return "a valid " + strings.TrimPrefix(strings.TrimPrefix(w, "an "), "a ")
	}
}

func (r *anRequest) validate() *anError {
	switch {
	case r.Model == nil || *r.Model == "":
		return anInvalid("model: Field required")
	case r.MaxTokens == nil:
		return anInvalid("max_tokens: Field required")
	case *r.MaxTokens != float64(int64(*r.MaxTokens)):
		return anInvalid("max_tokens: Input should be a valid integer")
	case *r.MaxTokens < 1:
		return anInvalid("max_tokens: Input should be greater than or equal to 1")
	case r.Messages == nil:
		return anInvalid("messages: Field required")
	case len(r.Messages) == 0:
		return anInvalid("messages: List should have at least 1 item after validation, not 0")
	}
	for i := range r.Messages {
		if e := r.Messages[i].validate(i, i == len(r.Messages)-1); e != nil {
			return e
		}
	}
	if e := anSystem(&r.System); e != nil {
		return e
	}
	for _, c := range []struct {
		name   string
		v      *float64
		lo, hi float64
	}{{"temperature", r.Temperature, 0, 1}, {"top_p", r.TopP, 0, 1}, {"top_k", r.TopK, 0, 1 << 31}} {
		switch {
		case c.v == nil:
		case *c.v < c.lo:
			return anInvalid("%s: Input should be greater than or equal to %g", c.name, c.lo)
		case *c.v > c.hi:
			return anInvalid("%s: Input should be less than or equal to %g", c.name, c.hi)
		}
	}
	if r.TopK != nil && *r.TopK != float64(int64(*r.TopK)) {
		return anInvalid("top_k: Input should be a valid integer")
	}
	for _, s := range r.StopSequences {
		if strings.TrimSpace(s) == "" {
			return anInvalid("stop_sequences: each stop sequence must contain non-whitespace")
		}
	}
	for i, t := range r.Tools {
		custom := t.Type == nil || *t.Type == "custom"
		switch {
		case t.Name == nil:
			return anInvalid("tools.%d.name: Field required", i)
		case !validToolName(*t.Name, 128):
			return anInvalid("tools.%d.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'", i)
		case custom && isNull(t.InputSchema):
			return anInvalid("tools.%d.custom.input_schema: Field required", i)
		case custom && jsonKind(t.InputSchema) != "object":
			return anInvalid("tools.%d.custom.input_schema: Input should be a valid dictionary", i)
		}
	}
	if tc := r.ToolChoice; tc != nil {
		switch {
		case tc.Type == nil:
			return anInvalid("tool_choice.type: Field required")
		case *tc.Type == "tool" && (tc.Name == nil || *tc.Name == ""):
			return anInvalid("tool_choice.tool.name: Field required")
		case *tc.Type != "auto" && *tc.Type != "any" && *tc.Type != "tool" && *tc.Type != "none":
			return anInvalid("tool_choice: Input tag '%s' found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'", *tc.Type)
		case len(r.Tools) == 0 && *tc.Type != "none":
			return anInvalid("tool_choice: tool_choice may only be specified while providing tools")
		}
	}
	return nil
}

func (m *anMessage) validate(i int, last bool) *anError {
	if m.Role == nil {
		return anInvalid("messages.%d.role: Field required", i)
	}
	switch *m.Role {
	case "user", "assistant":
	case "system":
		return anInvalid(`messages: Unexpected role "system". The Messages API accepts a top-level ` + "`system`" + ` parameter, not "system" as an input message role.`)
	default:
		return anInvalid("messages.%d.role: Input should be 'user' or 'assistant'", i)
	}
	// Only a final assistant message (a prefill) may be empty.
	mayBeEmpty := last && *m.Role == "assistant"
	c := &m.Content
	if mayBeEmpty {
		if t := anText(c); t != strings.TrimRightFunc(t, unicode.IsSpace) {
			return anInvalid("messages: final assistant content cannot end with trailing whitespace")
		}
	}
	switch c.kind {
	case "", "null":
		return anInvalid("messages.%d.content: Field required", i)
	case "string":
		if c.str == "" && !mayBeEmpty {
			return anEmptyContent(i)
		}
		return nil
	case "array":
	default:
		return anInvalid("messages.%d.content: Input should be a valid list", i)
	}
	if c.err != nil {
		return anInvalid("messages.%d.content: Input should be a valid list of content blocks", i)
	}
	if len(c.items) == 0 && !mayBeEmpty {
		return anEmptyContent(i)
	}
	for j := range c.items {
		if e := c.items[j].validate(i, j, *m.Role); e != nil {
			return e
		}
	}
	return nil
}

func anEmptyContent(i int) *anError {
	return anInvalid("messages.%d: all messages must have non-empty content except for the optional final assistant message", i)
}

// validate checks block j of message i, sent in a turn of role.
func (b *anBlock) validate(i, j int, role string) *anError {
	if b.Type == nil {
		return anInvalid("messages.%d.content.%d.type: Field required", i, j)
	}
	t := *b.Type
	switch t {
	case "text":
		if b.Text == nil {
			return anInvalid("messages.%d.content.%d.text: Field required", i, j)
		}
		if *b.Text == "" {
			return anInvalid("messages: text content blocks must be non-empty")
		}
	case "image", "document":
		if isNull(b.Source) {
			return anInvalid("messages.%d.content.%d.%s.source: Field required", i, j, t)
		}
	case "tool_use", "server_tool_use":
		switch {
		case b.ID == nil:
			return anInvalid("messages.%d.content.%d.%s.id: Field required", i, j, t)
		case b.Name == nil:
			return anInvalid("messages.%d.content.%d.%s.name: Field required", i, j, t)
		case jsonKind(b.Input) != "object":
			return anInvalid("messages.%d.content.%d.%s.input: Input should be a valid dictionary", i, j, t)
		case role != "assistant":
			return anInvalid("messages.%d: tool_use blocks may only appear in assistant messages", i)
		}
	case "tool_result":
		if b.ToolUseID == nil {
			return anInvalid("messages.%d.content.%d.tool_result.tool_use_id: Field required", i, j)
		}
		if role != "user" {
			return anInvalid("messages.%d: tool_result blocks may only appear in user messages", i)
		}
	case "thinking", "redacted_thinking", "search_result", "web_search_tool_result", "container_upload":
	default:
		return anInvalid("messages.%d.content.%d: Input tag '%s' found using 'type' does not match any of the expected tags: 'text', 'image', 'document', 'tool_use', 'tool_result', 'thinking', 'redacted_thinking'", i, j, t)
	}
	return nil
}

func anSystem(c *content[anBlock]) *anError {
	switch c.kind {
	case "", "null", "string":
		return nil
	case "array":
		if c.err != nil {
			return anInvalid("system: Input should be a valid list of text blocks")
		}
		for j, b := range c.items {
			switch {
			case b.Type == nil:
				return anInvalid("system.%d.type: Field required", j)
			case *b.Type != "text":
				return anInvalid("system.%d.type: Input should be 'text'", j)
			case b.Text == nil:
				return anInvalid("system.%d.text: Field required", j)
			}
		}
		return nil
	}
	return anInvalid("system: Input should be a valid string or a list of text blocks")
}

// anText is the text of a content: the string, or its text blocks joined by
// one space.
func anText(c *content[anBlock]) string {
	return joinTexts(c, func(b *anBlock) string {
		if b.Type != nil && *b.Type == "text" && b.Text != nil {
			return *b.Text
		}
		return ""
	})
}

// anWords counts the words of a content, tool results included.
func anWords(c *content[anBlock]) int {
	if c.kind == "string" {
		return countWords(c.str)
	}
	n := 0
	for i := range c.items {
		b := &c.items[i]
		switch {
		case b.Type == nil:
		case *b.Type == "text" && b.Text != nil:
			n += countWords(*b.Text)
		case *b.Type == "tool_result":
			n += anWords(&b.Content)
		}
	}
	return n
}

// prompt reduces a validated request to what the reply depends on. The last
// user message is the last one with text of its own: a turn that carries only
// tool results (OpenAI's tool role) does not count.
func (r *anRequest) prompt() prompt {
	p := prompt{maxTokens: int(*r.MaxTokens), stops: r.StopSequences}
	p.promptWords = anWords(&r.System)
	for i := range r.Messages {
		m := &r.Messages[i]
		p.promptWords += anWords(&m.Content)
		if *m.Role != "user" {
			continue
		}
		text := anText(&m.Content)
		if text != "" {
			p.lastUser = text
		}
		if i == len(r.Messages)-1 {
			p.userIsLast = text != ""
		}
	}
	if last := &r.Messages[len(r.Messages)-1]; *last.Role == "assistant" {
		p.prefill = anText(&last.Content)
	}
	if len(r.Tools) > 0 {
		tc := r.ToolChoice
		switch {
		case tc == nil || *tc.Type == "auto" || *tc.Type == "any":
			p.toolName = *r.Tools[0].Name
		case *tc.Type == "tool":
			p.toolName = *tc.Name
		}
	}
	return p
}

func (r *anRequest) stream() bool { return r.Stream != nil && *r.Stream }

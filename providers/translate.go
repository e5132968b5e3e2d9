package providers

// Translation between the canonical request and answer (OpenAI Chat
// Completions) and Anthropic's Messages API, WIRE.md. These are pure
// functions of their input so they can be tested and fuzzed without a network.
//
// Request, OpenAI → Anthropic:
//   - system and developer messages become the top-level system string,
//     joined in order by blank lines; they may be strings or text parts.
//   - user and assistant turns keep their role, consecutive turns of one role
//     are merged into one, a tool message becomes a tool_result block in a
//     user turn, and assistant tool_calls become tool_use blocks.
//   - content: strings and text parts become text blocks (empty text is left
//     out, Anthropic rejects it); image_url parts become image blocks, from a
//     base64 data: URL or an http(s) URL. Other parts (input_audio, file) are
//     refused as invalid, naming the part.
//   - max_completion_tokens, else max_tokens, else the provider's
//     DefaultMaxTokens (1024) becomes max_tokens, which Anthropic requires.
//   - temperature is CLAMPED into Anthropic's 0–1, not scaled: a value up to 1
//     keeps its meaning (0.2 is as deterministic on both), a value above 1
//     becomes 1, the most random Anthropic allows. Scaling would silently make
//     every common setting twice as deterministic.
//   - top_p is kept, stop becomes stop_sequences, user becomes
//     metadata.user_id, tools[].function{name,description,parameters} become
//     tools[]{name,description,input_schema}, tool_choice auto/none/required/
//     {function} becomes auto/none/any/tool, and parallel_tool_calls false
//     becomes disable_parallel_tool_use.
//   - Dropped silently, because the answer is still what the client asked
//     for: seed, presence_penalty, frequency_penalty, a message's name,
//     stream_options (usage is always reported), response_format text, n 1,
//     logprobs false, and fields the canonical request does not model.
//     Also stop sequences that are empty or only whitespace ("\n" is common
//     with OpenAI): Anthropic rejects them with a 400, and an answer that runs
//     past a newline is closer to the request than no answer at all.
//   - Refused with ClassInvalid naming the parameter, because dropping them
//     would return an answer of another shape than the one asked for: n > 1,
//     logprobs true, top_logprobs > 0, logit_bias, response_format
//     json_object or json_schema, tools that are not functions.
//
// Answer, Anthropic → OpenAI: text blocks are joined into message.content,
// tool_use blocks become tool_calls, stop_reason becomes finish_reason
// (end_turn and stop_sequence → stop, max_tokens → length, tool_use →
// tool_calls, refusal → content_filter, anything else → stop), usage
// input (with cache reads and writes) and output tokens become prompt,
// completion and total tokens, and the msg_ id is kept as the answer's id.
// Stream events become chunks the same way (anthropicStreamDecoder).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

type anthropicRequest struct {
	Model         string               `json:"model"`
	MaxTokens     int                  `json:"max_tokens"`
	System        string               `json:"system,omitempty"`
	Messages      []anthropicMessage   `json:"messages"`
	Temperature   *float64             `json:"temperature,omitempty"`
	TopP          *float64             `json:"top_p,omitempty"`
	StopSequences []string             `json:"stop_sequences,omitempty"`
	Stream        bool                 `json:"stream,omitempty"`
	Metadata      *anthropicMetadata   `json:"metadata,omitempty"`
	Tools         []anthropicTool      `json:"tools,omitempty"`
	ToolChoice    *anthropicToolChoice `json:"tool_choice,omitempty"`
}

type anthropicMetadata struct {
	UserID string `json:"user_id"`
}

type anthropicMessage struct {
	Role    string           `json:"role"`
	Content []anthropicBlock `json:"content"`
}

// anthropicBlock is one content block of a request: text, image, tool_use or
// tool_result.
type anthropicBlock struct {
	Type      string                `json:"type"`
	Text      string                `json:"text,omitempty"`
	Source    *anthropicImageSource `json:"source,omitempty"`
	ID        string                `json:"id,omitempty"`
	Name      string                `json:"name,omitempty"`
	Input     json.RawMessage       `json:"input,omitempty"`
	ToolUseID string                `json:"tool_use_id,omitempty"`
	Content   string                `json:"content,omitempty"`
}

type anthropicImageSource struct {
	Type      string `json:"type"` // base64 or url
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

type anthropicTool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type anthropicToolChoice struct {
	Type                   string `json:"type"` // auto, none, any, tool
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use,omitempty"`
}

// invalidParam is a request we refuse before calling the provider.
func invalidParam(param, format string, args ...any) *Error {
	return &Error{Class: ClassInvalid, Type: "invalid_request_error", Param: param, Message: fmt.Sprintf(format, args...)}
}

// toAnthropic translates the canonical request into an Anthropic Messages
// body for model. A request Anthropic cannot serve faithfully is a *Error of
// ClassInvalid (Provider unset) naming the parameter.
func toAnthropic(req *ChatRequest, model string, s ProviderSettings, stream bool) ([]byte, error) {
	out, err := anthropicRequestOf(req, model, s, stream)
	if err != nil {
		return nil, err
	}
	return json.Marshal(out)
}

// anthropicRequestOf is toAnthropic before the encoding: every refusal of the
// translation comes from here, so Anthropic.Check can ask without a body.
func anthropicRequestOf(req *ChatRequest, model string, s ProviderSettings, stream bool) (*anthropicRequest, error) {
	if err := checkAnthropicParams(req); err != nil {
		return nil, err
	}
	out := &anthropicRequest{
		Model:     model,
		MaxTokens: s.DefaultMaxTokens,
		TopP:      req.TopP,
		Stream:    stream,
	}
	if out.MaxTokens <= 0 {
		out.MaxTokens = DefaultMaxTokens
	}
	switch {
	case req.MaxCompletionTokens != nil:
		out.MaxTokens = *req.MaxCompletionTokens
	case req.MaxTokens != nil:
		out.MaxTokens = *req.MaxTokens
	}
	if req.Temperature != nil {
		t := min(max(*req.Temperature, 0), 1) // clamped, see the top of this file
		out.Temperature = &t
	}
	for _, stop := range req.Stop {
		if strings.TrimSpace(stop) != "" { // Anthropic rejects blank stop sequences
			out.StopSequences = append(out.StopSequences, stop)
		}
	}
	if req.User != "" {
		out.Metadata = &anthropicMetadata{UserID: req.User}
	}
	var err error
	if out.System, out.Messages, err = anthropicMessages(req.Messages); err != nil {
		return nil, err
	}
	if out.Tools, err = anthropicTools(req.Tools); err != nil {
		return nil, err
	}
	if out.ToolChoice, err = anthropicToolChoiceOf(req.ToolChoice, req.ParallelToolCalls, len(out.Tools) > 0); err != nil {
		return nil, err
	}
	return out, nil
}

// checkAnthropicParams refuses the parameters Anthropic has no equivalent
// for, when ignoring them would change what the client gets.
func checkAnthropicParams(req *ChatRequest) error {
	switch {
	case req.N != nil && *req.N > 1:
		return invalidParam("n", "n > 1 is not supported by this model's provider (Anthropic returns one choice)")
	case req.Logprobs != nil && *req.Logprobs:
		return invalidParam("logprobs", "logprobs is not supported by this model's provider (Anthropic)")
	case req.TopLogprobs != nil && *req.TopLogprobs > 0:
		return invalidParam("top_logprobs", "top_logprobs is not supported by this model's provider (Anthropic)")
	case len(req.LogitBias) > 0:
		return invalidParam("logit_bias", "logit_bias is not supported by this model's provider (Anthropic)")
	}
	if len(req.ResponseFormat) > 0 && !bytes.Equal(req.ResponseFormat, []byte("null")) {
		var rf struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(req.ResponseFormat, &rf) != nil {
			return invalidParam("response_format", "response_format must be an object")
		}
		if rf.Type != "text" && rf.Type != "" {
			return invalidParam("response_format", "response_format %q is not supported by this model's provider (Anthropic)", rf.Type)
		}
	}
	return nil
}

// anthropicMessages splits the conversation into the system text and the
// user/assistant turns, merging consecutive turns of one role.
func anthropicMessages(msgs []Message) (string, []anthropicMessage, error) {
	var system strings.Builder
	out := make([]anthropicMessage, 0, len(msgs))
	for i, m := range msgs {
		switch m.Role {
		case "system", "developer":
			text, err := textOnly(m.Content, fmt.Sprintf("messages[%d].content", i))
			if err != nil {
				return "", nil, err
			}
			if text == "" {
				continue
			}
			if system.Len() > 0 {
				system.WriteString("\n\n")
			}
			system.WriteString(text)
		case "user":
			blocks, err := userBlocks(m.Content, i)
			if err != nil {
				return "", nil, err
			}
			out = appendTurn(out, "user", blocks)
		case "assistant":
			blocks, err := assistantBlocks(m, i)
			if err != nil {
				return "", nil, err
			}
			out = appendTurn(out, "assistant", blocks)
		case "tool":
			text, err := textOnly(m.Content, fmt.Sprintf("messages[%d].content", i))
			if err != nil {
				return "", nil, err
			}
			if m.ToolCallID == "" {
				return "", nil, invalidParam(fmt.Sprintf("messages[%d].tool_call_id", i), "a tool message needs its tool_call_id")
			}
			out = appendTurn(out, "user", []anthropicBlock{{Type: "tool_result", ToolUseID: m.ToolCallID, Content: text}})
		default:
			return "", nil, invalidParam(fmt.Sprintf("messages[%d].role", i), "unknown role %q", m.Role)
		}
	}
	if len(out) == 0 {
		return "", nil, invalidParam("messages", "at least one user or assistant message with content is required")
	}
	return system.String(), out, nil
}

func appendTurn(out []anthropicMessage, role string, blocks []anthropicBlock) []anthropicMessage {
	if len(blocks) == 0 {
		return out
	}
	if n := len(out); n > 0 && out[n-1].Role == role {
		out[n-1].Content = append(out[n-1].Content, blocks...)
		return out
	}
	return append(out, anthropicMessage{Role: role, Content: blocks})
}

// textOnly returns a content's text, refusing parts that are not text.
func textOnly(c Content, param string) (string, error) {
	if c.Kind == ContentParts {
		for j, p := range c.Parts {
			if p.Type != "text" {
				return "", invalidParam(fmt.Sprintf("%s[%d]", param, j), "content part %q is not supported here; only text parts are", p.Type)
			}
		}
	}
	return c.PlainText(), nil
}

func userBlocks(c Content, i int) ([]anthropicBlock, error) {
	switch c.Kind {
	case ContentString:
		if c.Text == "" {
			return nil, nil
		}
		return []anthropicBlock{{Type: "text", Text: c.Text}}, nil
	case ContentParts:
		blocks := make([]anthropicBlock, 0, len(c.Parts))
		for j, p := range c.Parts {
			switch p.Type {
			case "text":
				if p.Text != "" {
					blocks = append(blocks, anthropicBlock{Type: "text", Text: p.Text})
				}
			case "image_url":
				b, err := imageBlock(p, fmt.Sprintf("messages[%d].content[%d].image_url", i, j))
				if err != nil {
					return nil, err
				}
				blocks = append(blocks, b)
			default:
				return nil, invalidParam(fmt.Sprintf("messages[%d].content[%d]", i, j),
					"content part %q is not supported by this model's provider (Anthropic); text and image_url are", p.Type)
			}
		}
		return blocks, nil
	}
	return nil, nil
}

// imageBlock translates an image_url part: a base64 data: URL becomes a base64
// source, an http(s) URL a url source.
func imageBlock(p ContentPart, param string) (anthropicBlock, error) {
	var part struct {
		ImageURL struct {
			URL string `json:"url"`
		} `json:"image_url"`
	}
	if json.Unmarshal(p.Raw, &part) != nil || part.ImageURL.URL == "" {
		return anthropicBlock{}, invalidParam(param, "image_url needs a url")
	}
	u := part.ImageURL.URL
	switch {
	case strings.HasPrefix(u, "data:"):
		meta, data, ok := strings.Cut(u[len("data:"):], ",")
		media, isBase64 := strings.CutSuffix(meta, ";base64")
		if !ok || !isBase64 || data == "" {
			return anthropicBlock{}, invalidParam(param, "an image data URL must be data:<media type>;base64,<data>")
		}
		switch media {
		case "image/jpeg", "image/png", "image/gif", "image/webp":
		default:
			return anthropicBlock{}, invalidParam(param, "image type %q is not supported; use jpeg, png, gif or webp", media)
		}
		return anthropicBlock{Type: "image", Source: &anthropicImageSource{Type: "base64", MediaType: media, Data: data}}, nil
	case strings.HasPrefix(u, "https://"), strings.HasPrefix(u, "http://"):
		return anthropicBlock{Type: "image", Source: &anthropicImageSource{Type: "url", URL: u}}, nil
	}
	return anthropicBlock{}, invalidParam(param, "an image url must be a data: or http(s) URL")
}

// openAIToolCall is one element of an assistant message's tool_calls, in a
// request or an answer: arguments as a JSON string.
type openAIToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

func assistantBlocks(m Message, i int) ([]anthropicBlock, error) {
	var blocks []anthropicBlock
	switch m.Content.Kind {
	case ContentString:
		if m.Content.Text != "" {
			blocks = append(blocks, anthropicBlock{Type: "text", Text: m.Content.Text})
		}
	case ContentParts:
		for j, p := range m.Content.Parts {
			switch p.Type {
			case "text":
				if p.Text != "" {
					blocks = append(blocks, anthropicBlock{Type: "text", Text: p.Text})
				}
			case "refusal": // a refusal the assistant gave earlier is dropped
			default:
				return nil, invalidParam(fmt.Sprintf("messages[%d].content[%d]", i, j), "content part %q is not allowed in an assistant message", p.Type)
			}
		}
	}
	if len(m.ToolCalls) == 0 || bytes.Equal(m.ToolCalls, []byte("null")) {
		return blocks, nil
	}
	var calls []openAIToolCall
	if json.Unmarshal(m.ToolCalls, &calls) != nil {
		return nil, invalidParam(fmt.Sprintf("messages[%d].tool_calls", i), "tool_calls must be an array of tool calls")
	}
	for j, tc := range calls {
		param := fmt.Sprintf("messages[%d].tool_calls[%d]", i, j)
		if tc.Type != "" && tc.Type != "function" {
			return nil, invalidParam(param+".type", "tool call type %q is not supported by this model's provider (Anthropic)", tc.Type)
		}
		if tc.ID == "" || tc.Function.Name == "" {
			return nil, invalidParam(param, "a tool call needs an id and a function name")
		}
		input := json.RawMessage(`{}`)
		if args := strings.TrimSpace(tc.Function.Arguments); args != "" {
			if !json.Valid([]byte(args)) || args[0] != '{' {
				return nil, invalidParam(param+".function.arguments", "tool call arguments must be a JSON object")
			}
			input = json.RawMessage(args)
		}
		blocks = append(blocks, anthropicBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: input})
	}
	return blocks, nil
}

func anthropicTools(raw json.RawMessage) ([]anthropicTool, error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var tools []struct {
		Type     string `json:"type"`
		Function *struct {
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Parameters  json.RawMessage `json:"parameters"`
		} `json:"function"`
	}
	if json.Unmarshal(raw, &tools) != nil {
		return nil, invalidParam("tools", "tools must be an array of tools")
	}
	out := make([]anthropicTool, 0, len(tools))
	for i, t := range tools {
		if t.Type != "function" || t.Function == nil || t.Function.Name == "" {
			return nil, invalidParam(fmt.Sprintf("tools[%d]", i), "only function tools with a name are supported by this model's provider (Anthropic)")
		}
		schema := t.Function.Parameters
		if len(schema) == 0 || bytes.Equal(schema, []byte("null")) {
			schema = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		out = append(out, anthropicTool{Name: t.Function.Name, Description: t.Function.Description, InputSchema: schema})
	}
	return out, nil
}

func anthropicToolChoiceOf(raw json.RawMessage, parallel *bool, haveTools bool) (*anthropicToolChoice, error) {
	if !haveTools {
		return nil, nil // without tools a choice means nothing to Anthropic
	}
	var tc *anthropicToolChoice
	if len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		var mode string
		var named struct {
			Type     string `json:"type"`
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		switch {
		case json.Unmarshal(raw, &mode) == nil:
			switch mode {
			case "auto":
				tc = &anthropicToolChoice{Type: "auto"}
			case "none":
				tc = &anthropicToolChoice{Type: "none"}
			case "required":
				tc = &anthropicToolChoice{Type: "any"}
			default:
				return nil, invalidParam("tool_choice", "tool_choice %q is not one of auto, none, required", mode)
			}
		case json.Unmarshal(raw, &named) == nil && named.Type == "function" && named.Function.Name != "":
			tc = &anthropicToolChoice{Type: "tool", Name: named.Function.Name}
		default:
			return nil, invalidParam("tool_choice", "tool_choice must be auto, none, required or a named function")
		}
	}
	if parallel != nil && !*parallel {
		if tc == nil {
			tc = &anthropicToolChoice{Type: "auto"}
		}
		if tc.Type != "none" {
			tc.DisableParallelToolUse = true
		}
	}
	return tc, nil
}

// The Anthropic answer.

type anthropicResponse struct {
	ID         string               `json:"id"`
	Type       string               `json:"type"`
	Role       string               `json:"role"`
	Model      string               `json:"model"`
	Content    *[]anthropicOutBlock `json:"content"`
	StopReason string               `json:"stop_reason"`
	Usage      anthropicUsage       `json:"usage"`
}

type anthropicOutBlock struct {
	Type  string          `json:"type"`
	Text  string          `json:"text"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

type anthropicUsage struct {
	InputTokens              int `json:"input_tokens"`
	OutputTokens             int `json:"output_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
}

// promptTokens counts every input token, cached or not, as OpenAI's
// prompt_tokens does.
func (u anthropicUsage) promptTokens() int {
	return u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens
}

// finishReason maps Anthropic's stop_reason to OpenAI's finish_reason.
func finishReason(stop string) string {
	switch stop {
	case "max_tokens":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	default: // end_turn, stop_sequence, pause_turn and reasons not yet known
		return "stop"
	}
}

// errNotAMessage is a 2xx Anthropic body that is not a message.
var errNotAMessage = errors.New("the answer is not an Anthropic message")

// fromAnthropic translates an Anthropic message into a chat.completion
// created at the given unix time. A body that is not a message is an error
// (the caller's ClassMalformed).
func fromAnthropic(body []byte, created int64) (*ChatResponse, error) {
	var m anthropicResponse
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	if m.Type != "message" || m.Content == nil {
		return nil, errNotAMessage
	}
	var text strings.Builder
	var calls []openAIToolCall
	for _, b := range *m.Content {
		switch b.Type {
		case "text":
			text.WriteString(b.Text)
		case "tool_use":
			args := "{}"
			if len(b.Input) > 0 && !bytes.Equal(b.Input, []byte("null")) {
				args = string(b.Input)
			}
			tc := openAIToolCall{ID: b.ID, Type: "function"}
			tc.Function.Name, tc.Function.Arguments = b.Name, args
			calls = append(calls, tc)
		}
	}
	msg := AnswerMessage{Role: "assistant"}
	if text.Len() > 0 || len(calls) == 0 {
		s := text.String()
		msg.Content = &s
	}
	if len(calls) > 0 {
		raw, err := json.Marshal(calls)
		if err != nil {
			return nil, err
		}
		msg.ToolCalls = raw
	}
	prompt := m.Usage.promptTokens()
	return &ChatResponse{
		ID:      m.ID,
		Object:  "chat.completion",
		Created: created,
		Model:   m.Model,
		Choices: []Choice{{Index: 0, Message: msg, Logprobs: json.RawMessage("null"), FinishReason: finishReason(m.StopReason)}},
		Usage:   &Usage{PromptTokens: prompt, CompletionTokens: m.Usage.OutputTokens, TotalTokens: prompt + m.Usage.OutputTokens},
	}, nil
}

package mock

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/valyala/fasthttp"
)

// OpenAI Chat Completions requests: decoding and validation as the real API
// does them, and the prompt the reply is derived from.

type oaRequest struct {
	Model               *string            `json:"model"`
	Messages            []oaMessage        `json:"messages"`
	Temperature         *float64           `json:"temperature"`
	TopP                *float64           `json:"top_p"`
	FrequencyPenalty    *float64           `json:"frequency_penalty"`
	PresencePenalty     *float64           `json:"presence_penalty"`
	N                   *float64           `json:"n"`
	Stop                json.RawMessage    `json:"stop"`
	Logprobs            *bool              `json:"logprobs"`
	TopLogprobs         *float64           `json:"top_logprobs"`
	LogitBias           map[string]float64 `json:"logit_bias"`
	MaxTokens           *float64           `json:"max_tokens"`
	MaxCompletionTokens *float64           `json:"max_completion_tokens"`
	Stream              *bool              `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage *bool `json:"include_usage"`
	} `json:"stream_options"`
	Tools      []oaTool        `json:"tools"`
	ToolChoice json.RawMessage `json:"tool_choice"`
}

type oaMessage struct {
	Role         *string         `json:"role"`
	Content      content[oaPart] `json:"content"`
	ToolCalls    json.RawMessage `json:"tool_calls"`
	FunctionCall json.RawMessage `json:"function_call"`
	ToolCallID   *string         `json:"tool_call_id"`
}

type oaPart struct {
	Type *string `json:"type"`
	Text *string `json:"text"`
}

type oaTool struct {
	Type     *string `json:"type"`
	Function *struct {
		Name *string `json:"name"`
	} `json:"function"`
}

// oaError is an answer in OpenAI's error format.
type oaError struct {
	status                    int
	typ, message, param, code string // empty param and code are null
}

func oaInvalid(param, code, msg string) *oaError {
	return &oaError{fasthttp.StatusBadRequest, "invalid_request_error", msg, param, code}
}

func oaMissing(param string) *oaError {
	return oaInvalid(param, "missing_required_parameter", fmt.Sprintf("Missing required parameter: '%s'.", param))
}

func oaWrongType(param, want, got string) *oaError {
	return oaInvalid(param, "invalid_type", fmt.Sprintf("Invalid type for '%s': expected %s, but got %s instead.", param, want, got))
}

func oaInvalidValue(param, got, supported string) *oaError {
	return oaInvalid(param, "invalid_value", fmt.Sprintf("Invalid value: '%s'. Supported values are: %s.", got, supported))
}

// oaRange checks an optional number against [lo, hi]; integer fields must
// also be whole.
func oaRange(param string, v *float64, lo, hi float64, integer bool) *oaError {
	if v == nil {
		return nil
	}
	kind := "decimal"
	if integer {
		kind = "integer"
		if *v != float64(int64(*v)) {
			return oaWrongType(param, "an integer", "a decimal")
		}
	}
	if *v < lo {
		return oaInvalid(param, kind+"_below_min_value", fmt.Sprintf("Invalid '%s': %s below minimum value. Expected a value >= %g, but got %g instead.", param, kind, lo, *v))
	}
	if *v > hi {
		return oaInvalid(param, kind+"_above_max_value", fmt.Sprintf("Invalid '%s': %s above maximum value. Expected a value <= %g, but got %g instead.", param, kind, hi, *v))
	}
	return nil
}

const oaParseError = "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)"

// oaDecode parses and validates a request body as the real API does.
func oaDecode(body []byte) (*oaRequest, *oaError) {
	req := new(oaRequest)
	if err := json.Unmarshal(body, req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, oaWrongType(te.Field, wantOf(te), article(te.Value))
		}
		return nil, oaInvalid("", "", oaParseError)
	}
	return req, req.validate()
}

func (r *oaRequest) validate() *oaError {
	if r.Model == nil || *r.Model == "" {
		return oaInvalid("model", "", "you must provide a model parameter")
	}
	if r.Messages == nil {
		return oaMissing("messages")
	}
	if len(r.Messages) == 0 {
		return oaInvalid("messages", "empty_array", "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.")
	}
	for i := range r.Messages {
		if e := r.Messages[i].validate(i); e != nil {
			return e
		}
	}
	for _, c := range []struct {
		param   string
		v       *float64
		lo, hi  float64
		integer bool
	}{
		{"temperature", r.Temperature, 0, 2, false},
		{"top_p", r.TopP, 0, 1, false},
		{"frequency_penalty", r.FrequencyPenalty, -2, 2, false},
		{"presence_penalty", r.PresencePenalty, -2, 2, false},
		{"n", r.N, 1, 128, true},
		{"top_logprobs", r.TopLogprobs, 0, 20, true},
		{"max_tokens", r.MaxTokens, 1, 1 << 31, true},
		{"max_completion_tokens", r.MaxCompletionTokens, 1, 1 << 31, true},
	} {
		if e := oaRange(c.param, c.v, c.lo, c.hi, c.integer); e != nil {
			return e
		}
	}
	if r.TopLogprobs != nil && (r.Logprobs == nil || !*r.Logprobs) {
		return oaInvalid("top_logprobs", "invalid_value", "Invalid value for 'top_logprobs': you must set 'logprobs' to true to use 'top_logprobs'.")
	}
	for k, v := range r.LogitBias {
		if v < -100 || v > 100 {
			return oaInvalid("logit_bias", "invalid_value", fmt.Sprintf("Invalid 'logit_bias': the bias for token %s must be between -100 and 100, got %g.", k, v))
		}
	}
	if _, e := oaStops(r.Stop); e != nil {
		return e
	}
	if r.StreamOptions != nil && (r.Stream == nil || !*r.Stream) {
		return oaInvalid("stream_options", "invalid_value", "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
	}
	for i, t := range r.Tools {
		p := "tools[" + strconv.Itoa(i) + "]"
		switch {
		case t.Type == nil:
			return oaMissing(p + ".type")
		case *t.Type == "custom":
		case *t.Type != "function":
			return oaInvalidValue(p+".type", *t.Type, "'function' and 'custom'")
		case t.Function == nil:
			return oaMissing(p + ".function")
		case t.Function.Name == nil:
			return oaMissing(p + ".function.name")
		case !validToolName(*t.Function.Name, 64):
			return oaInvalid(p+".function.name", "invalid_value", fmt.Sprintf("Invalid '%s.function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.", p))
		}
	}
	if _, e := r.toolChoice(); e != nil {
		return e
	}
	return nil
}

func (m *oaMessage) validate(i int) *oaError {
	param := func(field string) string { return fmt.Sprintf("messages[%d].%s", i, field) }
	if m.Role == nil {
		return oaMissing(param("role"))
	}
	role := *m.Role
	var allowed []string
	switch role {
	case "system", "developer":
		allowed = oaTextOnly
	case "user":
		allowed = oaUserParts
	case "assistant":
		allowed = oaAssistantParts
	case "tool", "function":
		allowed = oaTextOnly
		if role == "tool" && (m.ToolCallID == nil || *m.ToolCallID == "") {
			return oaMissing(param("tool_call_id"))
		}
	default:
		return oaInvalidValue(param("role"), role, "'system', 'assistant', 'user', 'function', 'tool', and 'developer'")
	}
	c := &m.Content
	switch c.kind {
	case "", "null":
		if role == "assistant" && (!isNull(m.ToolCalls) || !isNull(m.FunctionCall)) {
			return nil
		}
		return oaMissing(param("content"))
	case "string":
		return nil
	case "array":
	default:
		return oaWrongType(param("content"), "one of a string or array of objects", article(c.kind))
	}
	if c.err != nil {
		return oaWrongType(param("content"), "an array of objects", "an array with other values")
	}
	if len(c.items) == 0 {
		return oaInvalid(param("content"), "empty_array", fmt.Sprintf("Invalid '%s': empty array. Expected an array with minimum length 1, but got an empty array instead.", param("content")))
	}
	for j := range c.items {
		part := func(field string) string { return fmt.Sprintf("messages[%d].content[%d].%s", i, j, field) }
		switch t := c.items[j].Type; {
		case t == nil:
			return oaMissing(part("type"))
		case !slices.Contains(allowed, *t):
			return oaInvalidValue(part("type"), *t, quoteList(allowed))
		case *t == "text" && c.items[j].Text == nil:
			return oaMissing(part("text"))
		}
	}
	return nil
}

// The content part types each role may send.
var (
	oaTextOnly       = []string{"text"}
	oaUserParts      = []string{"text", "image_url", "input_audio", "file"}
	oaAssistantParts = []string{"text", "refusal"}
)

// oaText is the text of a message: its string content, or its text parts
// joined by one space.
func oaText(c *content[oaPart]) string {
	return joinTexts(c, func(p *oaPart) string {
		if p.Type != nil && *p.Type == "text" && p.Text != nil {
			return *p.Text
		}
		return ""
	})
}

func oaStops(raw json.RawMessage) ([]string, *oaError) {
	switch jsonKind(raw) {
	case "", "null":
		return nil, nil
	case "string":
		var s string
		_ = json.Unmarshal(raw, &s)
		return []string{s}, nil
	case "array":
		var ss []string
		if json.Unmarshal(raw, &ss) != nil {
			return nil, oaWrongType("stop", "an array of strings", "an array with other values")
		}
		if len(ss) == 0 {
			return nil, oaInvalid("stop", "empty_array", "Invalid 'stop': empty array. Expected an array with minimum length 1, but got an empty array instead.")
		}
		if len(ss) > 4 {
			return nil, oaInvalid("stop", "array_above_max_length", fmt.Sprintf("Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array with length %d instead.", len(ss)))
		}
		return ss, nil
	default:
		return nil, oaWrongType("stop", "one of a string or array of strings", article(jsonKind(raw)))
	}
}

// toolChoice returns the name of the tool a [tool] trigger calls, or "" when
// no tool may be called.
func (r *oaRequest) toolChoice() (string, *oaError) {
	if isNull(r.ToolChoice) {
		if len(r.Tools) == 0 {
			return "", nil
		}
		return r.firstTool(), nil
	}
	if len(r.Tools) == 0 {
		return "", oaInvalid("tool_choice", "invalid_value", "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.")
	}
	switch jsonKind(r.ToolChoice) {
	case "string":
		var s string
		_ = json.Unmarshal(r.ToolChoice, &s)
		switch s {
		case "none":
			return "", nil
		case "auto", "required":
			return r.firstTool(), nil
		}
		return "", oaInvalidValue("tool_choice", s, "'none', 'auto', and 'required'")
	case "object":
		var c struct {
			Type     string `json:"type"`
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		if json.Unmarshal(r.ToolChoice, &c) != nil || c.Type != "function" || c.Function.Name == "" {
			return "", oaMissing("tool_choice.function.name")
		}
		return c.Function.Name, nil
	}
	return "", oaWrongType("tool_choice", "one of a string or object", article(jsonKind(r.ToolChoice)))
}

func (r *oaRequest) firstTool() string {
	for _, t := range r.Tools {
		if t.Function != nil && t.Function.Name != nil {
			return *t.Function.Name
		}
	}
	return ""
}

// prompt reduces a validated request to what the reply depends on.
func (r *oaRequest) prompt() prompt {
	var p prompt
	for i := range r.Messages {
		m := &r.Messages[i]
		text := oaText(&m.Content)
		p.promptWords += countWords(text)
		if *m.Role == "user" {
			p.lastUser = text
		}
	}
	p.userIsLast = *r.Messages[len(r.Messages)-1].Role == "user"
	switch {
	case r.MaxCompletionTokens != nil:
		p.maxTokens = int(*r.MaxCompletionTokens)
	case r.MaxTokens != nil:
		p.maxTokens = int(*r.MaxTokens)
	}
	p.stops, _ = oaStops(r.Stop)
	p.toolName, _ = r.toolChoice()
	return p
}

func (r *oaRequest) stream() bool { return r.Stream != nil && *r.Stream }

func (r *oaRequest) choices() int {
	if r.N == nil {
		return 1
	}
	return int(*r.N)
}

func (r *oaRequest) includeUsage() bool {
	return r.StreamOptions != nil && r.StreamOptions.IncludeUsage != nil && *r.StreamOptions.IncludeUsage
}

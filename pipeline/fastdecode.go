package pipeline

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/llm-gateway/gateway/providers"
	"github.com/llm-gateway/gateway/providers/jsonscan"
)

// decodeFast decodes a request body into req in one pass over its bytes,
// with the result encoding/json would give, for the requests clients send in
// practice. encoding/json stays the reference: decodeFast returns false as
// soon as it meets anything it does not decode exactly the same way (invalid
// JSON, a value of the wrong type, a duplicate key, a key that only matches a
// field when case is ignored, a number out of range, nesting deeper than
// jsonscan.MaxDepth), and the caller then decodes the body with encoding/json,
// whose result and error message are the ones that count. FuzzDecodeFast
// checks that whenever decodeFast returns true, encoding/json accepts the
// body and decodes the same request.
//
// body must be valid UTF-8 (Decode checks it first). Strings without escapes
// are copied out of body as they are; strings with escapes, which are rare,
// are unquoted by encoding/json. The raw values (tools, tool_calls, content
// parts...) alias body, as Raw does.
//
// It also reports whether body then agrees with req as
// providers.ChatRequest.RawAgrees says: every key of the request once at
// most (a repeated one never takes this path), and stream_options not null.
func decodeFast(body []byte, req *providers.ChatRequest, room []providers.Message) (ok, rawAgrees bool) {
	s := scanner{Scanner: jsonscan.New(body), room: room}
	if !s.request(req) || !s.AtEnd() {
		return false, false
	}
	return true, !s.nullOptions
}

// scanner is the request decoder's one pass: jsonscan's grammar plus the
// request's types.
type scanner struct {
	jsonscan.Scanner
	nullOptions bool                // "stream_options": null was read
	room        []providers.Message // where messages go first, if not nil
}

// stringValue decodes a JSON string into a Go string.
func (s *scanner) stringValue() (string, bool) {
	start := s.Pos()
	raw, escaped, ok := s.Str()
	if !ok {
		return "", false
	}
	if !escaped {
		return string(raw), true
	}
	var out string
	if json.Unmarshal(s.Since(start), &out) != nil {
		return "", false
	}
	return out, true
}

// rawValue skips a value and returns its bytes.
func (s *scanner) rawValue() (json.RawMessage, bool) { return s.Raw() }

// foldsInto says whether encoding/json would match key to one of fields,
// which it does ignoring case (with Unicode folding): such a key sends the
// body to encoding/json.
func foldsInto(key []byte, fields []string) bool {
	ascii := true
	for _, c := range key {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if !ascii {
		return true // leave every non-ASCII key to encoding/json
	}
	for _, f := range fields {
		if bytes.EqualFold(key, []byte(f)) {
			return true
		}
	}
	return false
}

// object decodes an object whose fields are named in fields: visit gets the
// name of each one present and must read its value. A field that appears
// twice goes to encoding/json (which lets the last one win, merging into
// what the first one decoded), and so does a key that matches a field only
// when case is ignored; the value of any other key is checked and skipped.
func (s *scanner) object(fields []string, visit func(field string) bool) bool {
	return s.Object(fields, visit, func(key []byte) bool { return !foldsInto(key, fields) })
}

var requestFields = []string{"model", "messages", "temperature", "top_p", "n", "max_tokens",
	"max_completion_tokens", "stop", "presence_penalty", "frequency_penalty", "logprobs",
	"top_logprobs", "logit_bias", "seed", "user", "stream", "stream_options", "tools",
	"tool_choice", "parallel_tool_calls", "response_format"}

func (s *scanner) request(r *providers.ChatRequest) bool {
	return s.object(requestFields, func(field string) bool {
		switch field {
		case "model":
			return s.str2(&r.Model)
		case "messages":
			return s.messages(&r.Messages)
		case "temperature":
			return s.float(&r.Temperature)
		case "top_p":
			return s.float(&r.TopP)
		case "n":
			return s.int(&r.N)
		case "max_tokens":
			return s.int(&r.MaxTokens)
		case "max_completion_tokens":
			return s.int(&r.MaxCompletionTokens)
		case "stop":
			return s.stop(&r.Stop)
		case "presence_penalty":
			return s.float(&r.PresencePenalty)
		case "frequency_penalty":
			return s.float(&r.FrequencyPenalty)
		case "logprobs":
			return s.boolPtr(&r.Logprobs)
		case "top_logprobs":
			return s.int(&r.TopLogprobs)
		case "logit_bias":
			return s.floatMap(&r.LogitBias)
		case "seed":
			return s.int64(&r.Seed)
		case "user":
			return s.str2(&r.User)
		case "stream":
			return s.bool(&r.Stream)
		case "stream_options":
			s.nullOptions = s.Peek() == 'n'
			return s.streamOptions(&r.StreamOptions)
		case "tools":
			return s.raw(&r.Tools)
		case "tool_choice":
			return s.raw(&r.ToolChoice)
		case "parallel_tool_calls":
			return s.boolPtr(&r.ParallelToolCalls)
		case "response_format":
			return s.raw(&r.ResponseFormat)
		}
		return false
	})
}

// str2 decodes a string field; null leaves it as it is.
func (s *scanner) str2(dst *string) bool {
	switch s.Peek() {
	case 'n':
		return s.Literal("null")
	case '"':
		v, ok := s.stringValue()
		*dst = v
		return ok
	}
	return false
}

func (s *scanner) bool(dst *bool) bool {
	switch s.Peek() {
	case 'n':
		return s.Literal("null")
	case 't':
		*dst = true
		return s.Literal("true")
	case 'f':
		*dst = false
		return s.Literal("false")
	}
	return false
}

func (s *scanner) boolPtr(dst **bool) bool {
	if s.Peek() == 'n' {
		*dst = nil
		return s.Literal("null")
	}
	var v bool
	if !s.bool(&v) {
		return false
	}
	*dst = &v
	return true
}

func (s *scanner) float(dst **float64) bool {
	if s.Peek() == 'n' {
		*dst = nil
		return s.Literal("null")
	}
	raw, ok := s.Number()
	if !ok {
		return false
	}
	v, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return false
	}
	*dst = &v
	return true
}

func (s *scanner) int64(dst **int64) bool {
	if s.Peek() == 'n' {
		*dst = nil
		return s.Literal("null")
	}
	raw, ok := s.Number()
	if !ok {
		return false
	}
	v, ok := jsonscan.Int64(raw)
	if !ok {
		return false
	}
	*dst = &v
	return true
}

func (s *scanner) int(dst **int) bool {
	var v *int64
	if !s.int64(&v) {
		return false
	}
	if v == nil {
		*dst = nil
		return true
	}
	n := int(*v)
	if int64(n) != *v {
		return false
	}
	*dst = &n
	return true
}

// raw keeps a value's bytes, null included, as json.RawMessage does.
func (s *scanner) raw(dst *json.RawMessage) bool {
	v, ok := s.rawValue()
	*dst = v
	return ok
}

func (s *scanner) floatMap(dst *map[string]float64) bool {
	if s.Peek() == 'n' {
		*dst = nil
		return s.Literal("null")
	}
	m := make(map[string]float64)
	if !s.Members(func(key []byte, escaped bool) bool {
		if escaped {
			return false // encoding/json decodes the key
		}
		raw, ok := s.Number()
		if !ok {
			return false
		}
		v, err := strconv.ParseFloat(string(raw), 64)
		m[string(key)] = v
		return err == nil
	}) {
		return false
	}
	*dst = m
	return true
}

var streamOptionsFields = []string{"include_usage"}

func (s *scanner) streamOptions(dst **providers.StreamOptions) bool {
	if s.Peek() == 'n' {
		*dst = nil
		return s.Literal("null")
	}
	o := &providers.StreamOptions{}
	if !s.object(streamOptionsFields, func(string) bool { return s.bool(&o.IncludeUsage) }) {
		return false
	}
	*dst = o
	return true
}

// stop decodes what providers.Stop's UnmarshalJSON accepts: null, a string
// or an array of strings.
func (s *scanner) stop(dst *providers.Stop) bool {
	switch s.Peek() {
	case 'n':
		*dst = nil
		return s.Literal("null")
	case '"':
		v, ok := s.stringValue()
		*dst = providers.Stop{v}
		return ok
	case '[':
	default:
		return false
	}
	out := providers.Stop{}
	if !s.Array(func() bool {
		if s.Peek() != '"' {
			return false
		}
		v, ok := s.stringValue()
		out = append(out, v)
		return ok
	}) {
		return false
	}
	*dst = out
	return true
}

func (s *scanner) messages(dst *[]providers.Message) bool {
	if s.Peek() == 'n' {
		*dst = nil
		return s.Literal("null")
	}
	out := s.room[:0] // a pooled request's (requestFrame)
	if cap(out) == 0 {
		out = make([]providers.Message, 0, 4)
	}
	if !s.Array(func() bool {
		out = append(out, providers.Message{})
		return s.message(&out[len(out)-1])
	}) {
		return false
	}
	*dst = out
	return true
}

var messageFields = []string{"role", "content", "name", "tool_calls", "tool_call_id"}

func (s *scanner) message(m *providers.Message) bool {
	return s.object(messageFields, func(field string) bool {
		switch field {
		case "role":
			return s.str2(&m.Role)
		case "content":
			return s.content(&m.Content)
		case "name":
			return s.str2(&m.Name)
		case "tool_calls":
			return s.raw(&m.ToolCalls)
		case "tool_call_id":
			return s.str2(&m.ToolCallID)
		}
		return false
	})
}

// content decodes what providers.Content's UnmarshalJSON accepts: null, a
// string, or an array of part objects.
func (s *scanner) content(c *providers.Content) bool {
	switch s.Peek() {
	case 'n':
		*c = providers.Content{}
		return s.Literal("null")
	case '"':
		v, ok := s.stringValue()
		*c = providers.Content{Text: v, Kind: providers.ContentString}
		return ok
	case '[':
	default:
		return false
	}
	parts := make([]providers.ContentPart, 0, 2)
	if !s.Array(func() bool {
		start := s.Pos()
		var p providers.ContentPart
		if !s.part(&p) {
			return false
		}
		p.Raw = s.Since(start)
		parts = append(parts, p)
		return true
	}) {
		return false
	}
	*c = providers.Content{Parts: parts, Kind: providers.ContentParts}
	return true
}

var partFields = []string{"type", "text"}

func (s *scanner) part(p *providers.ContentPart) bool {
	return s.object(partFields, func(field string) bool {
		if field == "type" {
			return s.str2(&p.Type)
		}
		return s.str2(&p.Text)
	})
}

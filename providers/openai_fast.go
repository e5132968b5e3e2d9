package providers

import (
	"encoding/json"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/llm-gateway/gateway/providers/jsonscan"
)

// parseOpenAIFast reads a chat.completion in one pass with jsonscan, with
// the result parseOpenAIGJSON gives, for the answers providers send in
// practice. parseOpenAIGJSON stays the reference: the fast path gives up
// (ok false) on anything it does not read exactly as the reference would: a
// body that is not valid UTF-8 or not valid JSON, a key with an escape, a
// repeated key, a value of an unexpected type, an integer written as a
// float, nesting deeper than jsonscan.MaxDepth. The reference then decides
// and explains. FuzzParseOpenAIFast checks that whenever the fast path
// accepts a body, the reference accepts it too and reads the same answer.
//
// Like the reference, the strings it returns share body's memory: body is
// the caller's own copy and is never modified.
func parseOpenAIFast(body []byte) (*ChatResponse, bool) {
	return parseOpenAIFastIn(body, new(responseFrame))
}

// parseOpenAIFastIn is parseOpenAIFast into f, a zero frame but for its
// body: the answer, its first choice, its usage and the strings behind its
// first choice's content and refusal are f's.
func parseOpenAIFastIn(body []byte, f *responseFrame) (*ChatResponse, bool) {
	if !utf8.Valid(body) {
		return nil, false
	}
	s := openAIScanner{Scanner: jsonscan.New(body), frame: f}
	out := &f.resp
	out.Raw = body
	if !s.completion(out) || !s.AtEnd() || out.Choices == nil {
		return nil, false
	}
	return out, true
}

type openAIScanner struct {
	jsonscan.Scanner
	frame *responseFrame // where the answer's parts go
}

var completionFields = []string{"id", "object", "created", "model", "system_fingerprint", "choices", "usage"}

func (s *openAIScanner) completion(out *ChatResponse) bool {
	return s.Object(completionFields, func(field string) bool {
		switch field {
		case "id":
			return s.str(&out.ID)
		case "object":
			return s.str(&out.Object) && out.Object == "chat.completion"
		case "created":
			return s.int64(&out.Created)
		case "model":
			return s.str(&out.Model)
		case "system_fingerprint":
			return s.str(&out.SystemFingerprint)
		case "choices":
			// Into the frame's room (a repeated key never gets here: Object refuses it).
			out.Choices = s.frame.choices[:0]
			return s.Array(func() bool {
				out.Choices = append(out.Choices, Choice{})
				return s.choice(&out.Choices[len(out.Choices)-1])
			})
		case "usage":
			if s.Peek() == 'n' {
				return s.Literal("null")
			}
			out.Usage = &s.frame.usage
			return s.usage(out.Usage)
		}
		return false
	}, nil)
}

var choiceFields = []string{"index", "message", "logprobs", "finish_reason"}

func (s *openAIScanner) choice(c *Choice) bool {
	return s.Object(choiceFields, func(field string) bool {
		switch field {
		case "index":
			return s.int(&c.Index)
		case "message":
			return s.message(&c.Message)
		case "logprobs":
			raw, ok := s.Raw()
			c.Logprobs = raw
			return ok
		case "finish_reason":
			if s.Peek() == 'n' {
				return s.Literal("null")
			}
			return s.str(&c.FinishReason)
		}
		return false
	}, nil)
}

var messageFields = []string{"role", "content", "refusal", "tool_calls"}

func (s *openAIScanner) message(m *AnswerMessage) bool {
	return s.Object(messageFields, func(field string) bool {
		switch field {
		case "role":
			return s.str(&m.Role)
		case "content":
			return s.optionalStr(&m.Content)
		case "refusal":
			return s.optionalStr(&m.Refusal)
		case "tool_calls":
			switch s.Peek() {
			case 'n':
				return s.Literal("null")
			case '[':
				raw, ok := s.Raw()
				m.ToolCalls = json.RawMessage(raw)
				return ok
			}
		}
		return false
	}, nil)
}

var usageFields = []string{"prompt_tokens", "completion_tokens", "total_tokens"}

func (s *openAIScanner) usage(u *Usage) bool {
	return s.Object(usageFields, func(field string) bool {
		switch field {
		case "prompt_tokens":
			return s.int(&u.PromptTokens)
		case "completion_tokens":
			return s.int(&u.CompletionTokens)
		}
		return s.int(&u.TotalTokens)
	}, nil)
}

// str reads a string. Its bytes are used as they are unless it has an escape,
// which gjson decodes, so both paths unescape alike.
func (s *openAIScanner) str(dst *string) bool {
	start := s.Pos()
	raw, escaped, ok := s.Str()
	if !ok {
		return false
	}
	if escaped {
		*dst = gjson.ParseBytes(s.Since(start)).Str
		return true
	}
	*dst = unsafe.String(unsafe.SliceData(raw), len(raw))
	return true
}

// optionalStr reads a string or null.
func (s *openAIScanner) optionalStr(dst **string) bool {
	if s.Peek() == 'n' {
		*dst = nil
		return s.Literal("null")
	}
	if f := s.frame; f.strs < len(f.str) {
		p := &f.str[f.strs]
		f.strs++
		*dst = p
		return s.str(p)
	}
	var v string
	if !s.str(&v) {
		return false
	}
	*dst = &v
	return true
}

// int64 reads an integer that fits in 64 bits.
func (s *openAIScanner) int64(dst *int64) bool {
	raw, ok := s.Number()
	if !ok {
		return false
	}
	*dst, ok = jsonscan.Int64(raw)
	return ok
}

func (s *openAIScanner) int(dst *int) bool {
	var v int64
	if !s.int64(&v) || int64(int(v)) != v {
		return false
	}
	*dst = int(v)
	return true
}

package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/go-playground/validator/v10"

	"github.com/llm-gateway/gateway/providers"
)

// Decoder turns a request body into a validated ChatRequest, or into the
// exact 4xx answer that explains what is wrong with it. One Decoder is built
// at start (validator registration is not safe for concurrent use) and then
// shared by every request.
type Decoder struct {
	validate    *validator.Validate
	maxMessages int
}

// NewDecoder builds the validator once.
func NewDecoder(maxMessages int) *Decoder {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			return ""
		}
		return name
	})
	// One rule for the whole list rather than dive: validator v10 boxes each
	// element it dives into, and names it twice ("Messages[3]" and
	// "messages[3]"), four allocations per message on every request.
	_ = v.RegisterValidation("messages", func(fl validator.FieldLevel) bool {
		_, bad := firstMessageProblem(fieldAt[[]providers.Message](fl.Field()))
		return !bad
	})
	v.RegisterStructValidation(validateRequest, providers.ChatRequest{})
	return &Decoder{validate: v, maxMessages: maxMessages}
}

// Decode checks the content type, decodes and validates body. The returned
// request keeps body as Raw; body must stay valid while the request is used.
// When the body decodes but fails validation, the request is returned with
// the error, so the caller can still log its model.
func (d *Decoder) Decode(contentType, body []byte) (*providers.ChatRequest, *apiError) {
	if !isJSON(contentType) {
		return nil, &apiError{Status: 415, Type: typeInvalidRequest, Code: "unsupported_media_type",
			Message: fmt.Sprintf("Content-Type must be application/json, got %q", truncate(string(contentType), 100)),
			Reason:  "unsupported_media_type"}
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, invalid("", "the request body is empty; send a JSON object with model and messages")
	}
	if !utf8.Valid(body) {
		return nil, invalid("", "the request body is not valid UTF-8")
	}
	if body[0] != '{' {
		return nil, invalid("", "the request body must be a JSON object")
	}
	f := framePool.Get().(*requestFrame)
	req := &f.req
	ok, agrees := decodeFast(body, req, f.msgs[:0])
	if !ok {
		// Anything the one-pass decoder does not handle exactly as
		// encoding/json does, invalid bodies included, is decoded (and
		// explained) by encoding/json.
		*req = providers.ChatRequest{}
		if err := json.Unmarshal(body, req); err != nil {
			return nil, jsonError(err)
		}
	}
	req.Raw, req.RawAgrees = body, agrees
	if len(req.Messages) > d.maxMessages {
		return req, invalid("messages", fmt.Sprintf("messages: at most %d messages are accepted, got %d", d.maxMessages, len(req.Messages)))
	}
	if err := d.validate.Struct(req); err != nil {
		return req, validationError(err)
	}
	if ae := wireProblem(req); ae != nil {
		return req, ae
	}
	return req, nil
}

// requestFrame is a decoded request with room for its first messages. A
// frame is used again once its request is done (Decoder.release): that saves
// the two allocations of every request, about 800 bytes, and the memory it
// reuses is still in the cache, where a fresh allocation is not.
type requestFrame struct {
	req  providers.ChatRequest // first, so that release finds the frame from it
	msgs [4]providers.Message
}

var framePool = sync.Pool{New: func() any { return new(requestFrame) }}

// release gives back a request returned by Decode once nothing uses it any
// more: not its fields, its messages, nor anything taken from them but
// strings. A request that may still be in use somewhere (a stream's, or one
// whose handler panicked) is simply left to the garbage collector.
func (d *Decoder) release(req *providers.ChatRequest) {
	f := (*requestFrame)(unsafe.Pointer(req))
	*f = requestFrame{}
	framePool.Put(f)
}

func isJSON(ct []byte) bool {
	mt, _, _ := bytes.Cut(ct, []byte(";"))
	mt = bytes.TrimSpace(mt)
	return bytes.EqualFold(mt, []byte("application/json")) ||
		(bytes.HasPrefix(bytes.ToLower(mt), []byte("application/")) && bytes.HasSuffix(bytes.ToLower(mt), []byte("+json")))
}

// jsonError explains a decoding failure with its place in the body.
func jsonError(err error) *apiError {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return invalid("", fmt.Sprintf("the request body is not valid JSON: %s (at byte %d)", syn.Error(), syn.Offset))
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		return invalid(field, fmt.Sprintf("%s: expected %s, got JSON %s", field, jsonKind(typ.Type), typ.Value))
	default:
		return invalid("", "the request body could not be decoded: "+err.Error())
	}
}

func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Float64, reflect.Float32:
		return "a number"
	case reflect.Slice:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

// validationError turns the first validator failure into a message with the
// JSON path of the field, e.g. messages[0].role.
func validationError(err error) *apiError {
	var ves validator.ValidationErrors
	if !errors.As(err, &ves) || len(ves) == 0 {
		return invalid("", "invalid request: "+err.Error())
	}
	fe := ves[0]
	path := fe.Namespace()
	if _, rest, ok := strings.Cut(path, "."); ok {
		path = rest // drop the struct name
	}
	if fe.Tag() == "messages" {
		if msgs, ok := fe.Value().([]providers.Message); ok {
			if p, bad := firstMessageProblem(&msgs); bad {
				return invalid(p.path, p.path+": "+explainRule(p.tag, p.param, reflect.String, p.value))
			}
		}
	}
	return invalid(path, path+": "+explain(fe))
}

func explain(fe validator.FieldError) string {
	return explainRule(fe.Tag(), fe.Param(), fe.Kind(), fe.Value())
}

// explainRule says what a value breaking rule tag (with its param) must be.
func explainRule(tag, param string, kind reflect.Kind, value any) string {
	switch tag {
	case "required":
		return "is required"
	case "min":
		if kind == reflect.Slice {
			return fmt.Sprintf("must have at least %s item(s)", param)
		}
		return "must be at least " + param
	case "max":
		if kind == reflect.Slice || kind == reflect.Map {
			return fmt.Sprintf("must have at most %s item(s)", param)
		}
		if kind == reflect.String {
			return fmt.Sprintf("must be at most %s characters", param)
		}
		return "must be at most " + param
	case "gte":
		return fmt.Sprintf("must be at least %s, got %v", param, deref(value))
	case "lte":
		return fmt.Sprintf("must be at most %s, got %v", param, deref(value))
	case "oneof":
		return "must be one of " + strings.ReplaceAll(param, " ", ", ") + ", got " + strconv.Quote(sprint(value))
	case "tool_call_id":
		return "is required for a tool message"
	case "content":
		return "is required (a string or a non-empty array of parts)"
	case "parts":
		return "must be a non-empty array of parts"
	case "part_type":
		return "part type " + strconv.Quote(sprint(value)) + " is not allowed here (" + param + ")"
	case "logprobs":
		return "requires logprobs: true"
	case "stream":
		return "is only allowed with stream: true"
	}
	return "fails " + tag
}

func deref(v any) any {
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv = rv.Elem()
	}
	return rv.Interface()
}

// structAt returns the struct being validated without copying it into an
// interface (a ChatRequest is several hundred bytes).
func structAt[T any](sl validator.StructLevel) *T { return fieldAt[T](sl.Current()) }

// fieldAt returns a pointer to the value v holds, without a copy when v is
// addressable.
func fieldAt[T any](v reflect.Value) *T {
	if v.CanAddr() {
		return v.Addr().Interface().(*T)
	}
	t := v.Interface().(T)
	return &t
}

// messageProblem is the first rule a message breaks: where, which rule (a
// tag explainRule knows), its param and the offending value.
type messageProblem struct {
	path, tag, param string
	value            any
}

// messageRoles are the roles a message may have.
const messageRoles = "developer system user assistant tool"

// sprint is fmt.Sprint without its cost for the strings the rules report.
func sprint(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// firstMessageProblem checks the messages in order, each one's role first,
// then the rules that span its fields.
func firstMessageProblem(msgs *[]providers.Message) (messageProblem, bool) {
	for i := range *msgs {
		m := &(*msgs)[i]
		field := func(name string) string { return "messages[" + strconv.Itoa(i) + "]." + name }
		switch m.Role {
		case "developer", "system", "user", "assistant", "tool":
		case "":
			return messageProblem{field("role"), "required", "", m.Role}, true
		default:
			return messageProblem{field("role"), "oneof", messageRoles, m.Role}, true
		}
		switch {
		case m.Role == "tool" && m.ToolCallID == "":
			return messageProblem{field("tool_call_id"), "tool_call_id", "", m.ToolCallID}, true
		case m.Content.Kind == providers.ContentAbsent && !(m.Role == "assistant" && len(m.ToolCalls) > 0 && string(m.ToolCalls) != "null"):
			return messageProblem{field("content"), "content", "", nil}, true
		case m.Content.Kind == providers.ContentParts && len(m.Content.Parts) == 0:
			return messageProblem{field("content"), "parts", "", nil}, true
		}
		for j, p := range m.Content.Parts {
			allowed := "text"
			ok := p.Type == "text"
			switch m.Role {
			case "user":
				allowed = "text, image_url, input_audio, file"
				ok = ok || p.Type == "image_url" || p.Type == "input_audio" || p.Type == "file"
			case "assistant":
				allowed = "text, refusal"
				ok = ok || p.Type == "refusal"
			}
			if !ok {
				return messageProblem{field(fmt.Sprintf("content[%d].type", j)), "part_type", allowed + " for role " + m.Role, p.Type}, true
			}
		}
	}
	return messageProblem{}, false
}

// validateRequest holds the rules of a request that span its fields.
func validateRequest(sl validator.StructLevel) {
	r := structAt[providers.ChatRequest](sl)
	if r.TopLogprobs != nil && (r.Logprobs == nil || !*r.Logprobs) {
		sl.ReportError(r.TopLogprobs, "top_logprobs", "TopLogprobs", "logprobs", "")
	}
	if r.StreamOptions != nil && !r.Stream {
		sl.ReportError(r.StreamOptions, "stream_options", "StreamOptions", "stream", "")
	}
}

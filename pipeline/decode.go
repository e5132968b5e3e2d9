package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"

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
	v.RegisterStructValidation(validateMessage, providers.Message{})
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
	req := &providers.ChatRequest{}
	if !decodeFast(body, req) {
		// Anything the one-pass decoder does not handle exactly as
		// encoding/json does, invalid bodies included, is decoded (and
		// explained) by encoding/json.
		*req = providers.ChatRequest{}
		if err := json.Unmarshal(body, req); err != nil {
			return nil, jsonError(err)
		}
	}
	req.Raw = body
	if len(req.Messages) > d.maxMessages {
		return req, invalid("messages", fmt.Sprintf("messages: at most %d messages are accepted, got %d", d.maxMessages, len(req.Messages)))
	}
	if err := d.validate.Struct(req); err != nil {
		return req, validationError(err)
	}
	return req, nil
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
	return invalid(path, path+": "+explain(fe))
}

func explain(fe validator.FieldError) string {
	switch fe.Tag() {
	case "required":
		return "is required"
	case "min":
		if fe.Kind() == reflect.Slice {
			return fmt.Sprintf("must have at least %s item(s)", fe.Param())
		}
		return "must be at least " + fe.Param()
	case "max":
		if fe.Kind() == reflect.Slice || fe.Kind() == reflect.Map {
			return fmt.Sprintf("must have at most %s item(s)", fe.Param())
		}
		if fe.Kind() == reflect.String {
			return fmt.Sprintf("must be at most %s characters", fe.Param())
		}
		return "must be at most " + fe.Param()
	case "gte":
		return fmt.Sprintf("must be at least %s, got %v", fe.Param(), deref(fe.Value()))
	case "lte":
		return fmt.Sprintf("must be at most %s, got %v", fe.Param(), deref(fe.Value()))
	case "oneof":
		return fmt.Sprintf("must be one of %s, got %q", strings.ReplaceAll(fe.Param(), " ", ", "), fmt.Sprint(fe.Value()))
	case "tool_call_id":
		return "is required for a tool message"
	case "content":
		return "is required (a string or a non-empty array of parts)"
	case "parts":
		return "must be a non-empty array of parts"
	case "part_type":
		return fmt.Sprintf("part type %q is not allowed here (%s)", fmt.Sprint(fe.Value()), fe.Param())
	case "logprobs":
		return "requires logprobs: true"
	case "stream":
		return "is only allowed with stream: true"
	}
	return "fails " + fe.Tag()
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
func structAt[T any](sl validator.StructLevel) *T {
	v := sl.Current()
	if v.CanAddr() {
		return v.Addr().Interface().(*T)
	}
	t := v.Interface().(T)
	return &t
}

// validateMessage holds the rules of a message that span its fields.
func validateMessage(sl validator.StructLevel) {
	m := structAt[providers.Message](sl)
	switch {
	case m.Role == "tool" && m.ToolCallID == "":
		sl.ReportError(m.ToolCallID, "tool_call_id", "ToolCallID", "tool_call_id", "")
	case m.Content.Kind == providers.ContentAbsent && !(m.Role == "assistant" && len(m.ToolCalls) > 0 && string(m.ToolCalls) != "null"):
		sl.ReportError(m.Content, "content", "Content", "content", "")
	case m.Content.Kind == providers.ContentParts && len(m.Content.Parts) == 0:
		sl.ReportError(m.Content, "content", "Content", "parts", "")
	}
	for i, p := range m.Content.Parts {
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
			sl.ReportError(p.Type, fmt.Sprintf("content[%d].type", i), "Type", "part_type", allowed+" for role "+m.Role)
			return
		}
	}
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

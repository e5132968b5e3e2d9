package mock

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
)

// Request checks shared by both dialects.

// unknownModelPrefix marks a model that does not exist: both APIs answer 404
// for it, so tests can exercise the gateway's handling of a missing model.
const unknownModelPrefix = "unknown-"

// jsonKind names the JSON type of a raw value: "string", "array", "object",
// "number", "boolean", "null", or "" when absent.
func jsonKind(raw json.RawMessage) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		return "string"
	case '[':
		return "array"
	case '{':
		return "object"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// isNull reports whether a raw field is absent or null.
func isNull(raw json.RawMessage) bool {
	k := jsonKind(raw)
	return k == "" || k == "null"
}

// article turns a JSON type name, as jsonKind or encoding/json name them,
// into the phrase the APIs use in messages: "a string", "an array".
func article(kind string) string {
	switch kind {
	case "array", "object", "integer":
		return "an " + kind
	case "bool":
		return "a boolean"
	case "number":
		return "a number"
	case "":
		return "nothing"
	}
	return "a " + kind
}

// wantOf names the type encoding/json expected.
func wantOf(te *json.UnmarshalTypeError) string {
	if te.Type == nil {
		return "a valid value"
	}
	switch te.Type.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return wantOf(&json.UnmarshalTypeError{Type: te.Type.Elem()})
	}
	return "a valid value"
}

func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = "'" + s + "'"
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + ", and " + q[len(q)-1]
}

// validToolName is the APIs' pattern for tool names: ^[a-zA-Z0-9_-]{1,max}$.
func validToolName(name string, max int) bool {
	if name == "" || len(name) > max {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// bearer extracts KEY from "Bearer KEY".
func bearer(h []byte) (string, bool) {
	const prefix = "bearer "
	if len(h) < len(prefix) || !strings.EqualFold(string(h[:len(prefix)]), prefix) {
		return "", false
	}
	return strings.TrimSpace(string(h[len(prefix):])), true
}

// redact shows the ends of a key, as the real APIs do in their messages.
func redact(key string) string {
	if len(key) <= 8 {
		return "****"
	}
	return key[:3] + "*****" + key[len(key)-4:]
}

// setRetryAfter sets both retry headers the SDKs read: retry-after-ms first,
// then retry-after in seconds.
func setRetryAfter(ctx *fasthttp.RequestCtx, seconds int) {
	var num [20]byte
	ctx.Response.Header.SetBytesV("retry-after", strconv.AppendInt(num[:0], int64(seconds), 10))
	ctx.Response.Header.SetBytesV("retry-after-ms", strconv.AppendInt(num[:0], int64(seconds)*1000, 10))
}

// content is a field that holds either a string or an array of objects
// (OpenAI message content; Anthropic content, system and tool results). It
// is decoded once, with the request, and validated afterwards, so that the
// error names the full path of a bad item.
type content[T any] struct {
	kind  string // as jsonKind names it; "" when absent
	str   string
	items []T
	err   error // the items did not decode
}

func (c *content[T]) UnmarshalJSON(b []byte) error {
	c.kind = jsonKind(b)
	switch c.kind {
	case "string":
		return json.Unmarshal(b, &c.str)
	case "array":
		if err := json.Unmarshal(b, &c.items); err != nil {
			c.items, c.err = nil, err
		}
	}
	return nil
}

// absent reports a missing or null field.
func (c *content[T]) absent() bool { return c.kind == "" || c.kind == "null" }

// joinTexts joins the non-empty texts of a content's items with one space,
// allocating only when there is more than one.
func joinTexts[T any](c *content[T], text func(*T) string) string {
	if c.kind == "string" {
		return c.str
	}
	var first string
	var b strings.Builder
	for i := range c.items {
		t := text(&c.items[i])
		switch {
		case t == "":
		case first == "":
			first = t
		default:
			if b.Len() == 0 {
				b.WriteString(first)
			}
			b.WriteByte(' ')
			b.WriteString(t)
		}
	}
	if b.Len() > 0 {
		return b.String()
	}
	return first
}

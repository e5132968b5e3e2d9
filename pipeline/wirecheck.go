package pipeline

import (
	"strconv"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/llm-gateway/gateway/providers"
)

// The rules below are OpenAI's own for the fields the request keeps as raw
// JSON (tools, tool_choice) or whose absence the decoded struct cannot show
// (stop: [], a text part without text). Without them such a request cost a
// provider call to learn it was invalid. They run only when those fields are
// there, so a plain request pays nothing.

// wireProblem is the first of these rules req breaks, or nil.
func wireProblem(req *providers.ChatRequest) *apiError {
	if req.Stop != nil && len(req.Stop) == 0 {
		return invalid("stop", "stop: must be a string or an array of 1 to 4 strings, got an empty array")
	}
	for i := range req.Messages {
		for j, p := range req.Messages[i].Content.Parts {
			if p.Type == "text" && p.Text == "" && gjsonOf(p.Raw).Get("text").Type != gjson.String {
				path := "messages[" + strconv.Itoa(i) + "].content[" + strconv.Itoa(j) + "].text"
				return invalid(path, path+": is required for a text part (a string)")
			}
		}
	}
	tools, ae := toolsProblem(req.Tools)
	if ae != nil {
		return ae
	}
	if ae := toolChoiceProblem(req.ToolChoice, tools); ae != nil {
		return ae
	}
	return responseFormatProblem(req.ResponseFormat)
}

// responseFormatProblem checks response_format: text, json_object, or
// json_schema with its json_schema object and name.
func responseFormatProblem(raw []byte) *apiError {
	if isNullJSON(raw) {
		return nil
	}
	rf := gjsonOf(raw)
	if !rf.IsObject() {
		return invalid("response_format", "response_format: must be an object")
	}
	switch typ := rf.Get("type"); {
	case typ.Type == gjson.String && (typ.Str == "text" || typ.Str == "json_object"):
		return nil
	case typ.Type == gjson.String && typ.Str == "json_schema":
		if n := rf.Get("json_schema.name"); !rf.Get("json_schema").IsObject() || n.Type != gjson.String || n.Str == "" {
			return invalid("response_format.json_schema", "response_format.json_schema: is required, an object with a name")
		}
		return nil
	case !typ.Exists():
		return invalid("response_format.type", "response_format.type: is required")
	default:
		return invalid("response_format.type", "response_format.type: must be text, json_object or json_schema, got "+jsonShort(typ))
	}
}

func gjsonOf(b []byte) gjson.Result {
	return gjson.Parse(unsafe.String(unsafe.SliceData(b), len(b)))
}

func isNullJSON(b []byte) bool { return len(b) == 0 || string(b) == "null" }

// toolsProblem checks tools: an array of function tools, each with a name
// OpenAI accepts, or custom tools. It returns how many there are.
func toolsProblem(raw []byte) (int, *apiError) {
	if isNullJSON(raw) {
		return 0, nil
	}
	tools := gjsonOf(raw)
	if !tools.IsArray() {
		return 0, invalid("tools", "tools: must be an array of tools")
	}
	var ae *apiError
	i := 0
	tools.ForEach(func(_, t gjson.Result) bool {
		p := "tools[" + strconv.Itoa(i) + "]"
		i++
		if !t.IsObject() {
			ae = invalid(p, p+": must be an object")
			return false
		}
		switch typ := t.Get("type"); {
		case !typ.Exists():
			ae = invalid(p+".type", p+".type: is required")
		case typ.String() == "custom" && typ.Type == gjson.String:
		case typ.String() != "function" || typ.Type != gjson.String:
			ae = invalid(p+".type", p+".type: must be function or custom, got "+jsonShort(typ))
		default:
			fn := t.Get("function")
			name := fn.Get("name")
			switch {
			case !fn.IsObject():
				ae = invalid(p+".function", p+".function: is required (an object with a name)")
			case name.Type != gjson.String:
				ae = invalid(p+".function.name", p+".function.name: is required (a string)")
			case !validToolName(name.Str):
				ae = invalid(p+".function.name", p+".function.name: must be 1 to 64 letters, digits, _ or -, got "+strconv.Quote(truncate(name.Str, 70)))
			}
		}
		return ae == nil
	})
	return i, ae
}

func validToolName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// toolChoiceProblem checks tool_choice: only with tools (there are ntools);
// none, auto or required, or an object naming what it chooses.
func toolChoiceProblem(raw []byte, ntools int) *apiError {
	if isNullJSON(raw) {
		return nil
	}
	if ntools == 0 {
		return invalid("tool_choice", "tool_choice: is only allowed when tools are given")
	}
	c := gjsonOf(raw)
	switch {
	case c.Type == gjson.String:
		switch c.Str {
		case "none", "auto", "required":
			return nil
		}
		return invalid("tool_choice", "tool_choice: must be none, auto, required or an object, got "+strconv.Quote(truncate(c.Str, 50)))
	case c.IsObject():
		switch typ := c.Get("type").String(); typ {
		case "function", "custom":
			if n := c.Get(typ + ".name"); n.Type != gjson.String || n.Str == "" {
				return invalid("tool_choice", "tool_choice."+typ+".name: is required")
			}
			return nil
		case "allowed_tools":
			if !c.Get("allowed_tools").IsObject() {
				return invalid("tool_choice", "tool_choice.allowed_tools: is required (an object)")
			}
			return nil
		}
		return invalid("tool_choice", "tool_choice.type: must be function, custom or allowed_tools, got "+jsonShort(c.Get("type")))
	}
	return invalid("tool_choice", "tool_choice: must be a string or an object")
}

// jsonShort shows a value in a message: a string quoted, anything else as
// its JSON, either cut to 50 bytes.
func jsonShort(v gjson.Result) string {
	if v.Type == gjson.String {
		return strconv.Quote(truncate(v.Str, 50))
	}
	return truncate(v.Raw, 50)
}

package pipeline

import (
	"strings"
	"testing"
)

func TestDecodeRejectsWithTheFieldPath(t *testing.T) {
	d := NewDecoder(4)
	long := `{"model":"gpt-4","messages":[` + strings.Repeat(`{"role":"user","content":"x"},`, 4) + `{"role":"user","content":"x"}]}`
	for _, tc := range []struct {
		name, ct, body string
		status         int
		param, msg     string
	}{
		{"wrong content type", "text/plain", `{}`, 415, "", "Content-Type must be application/json"},
		{"empty body", "application/json", ``, 400, "", "empty"},
		{"not an object", "application/json", `[1,2]`, 400, "", "must be a JSON object"},
		{"bad json", "application/json", `{"model":`, 400, "", "not valid JSON"},
		{"truncated", "application/json", `{"model":"gpt-4","messages":[{"role":"us`, 400, "", "not valid JSON"},
		{"invalid utf-8", "application/json", "{\"model\":\"gpt-4\xff\"}", 400, "", "UTF-8"},
		{"missing model", "application/json", `{"messages":[{"role":"user","content":"hi"}]}`, 400, "model", "model: is required"},
		{"missing messages", "application/json", `{"model":"gpt-4"}`, 400, "messages", "messages: is required"},
		{"empty messages", "application/json", `{"model":"gpt-4","messages":[]}`, 400, "messages", "at least 1"},
		{"bad role", "application/json", `{"model":"gpt-4","messages":[{"role":"robot","content":"hi"}]}`, 400, "messages[0].role", "must be one of"},
		{"missing role", "application/json", `{"model":"gpt-4","messages":[{"content":"hi"}]}`, 400, "messages[0].role", "is required"},
		{"bad role in a later message", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"a"},{"role":"Robot","content":"hi"}]}`, 400, "messages[2].role", `must be one of developer, system, user, assistant, tool, got "Robot"`},
		{"the first message problem wins", "application/json", `{"model":"gpt-4","messages":[{"role":"tool","content":"42"},{"role":"robot","content":"hi"}],"temperature":9}`, 400, "messages[0].tool_call_id", "required for a tool message"},
		{"a message's role before its other rules", "application/json", `{"model":"gpt-4","messages":[{"role":"","content":null}]}`, 400, "messages[0].role", "is required"},
		{"model before messages", "application/json", `{"model":"","messages":[{"role":"robot","content":"hi"}]}`, 400, "model", "model: is required"},
		{"messages before temperature", "application/json", `{"model":"gpt-4","messages":[{"role":"robot","content":"hi"}],"temperature":9}`, 400, "messages[0].role", "must be one of"},
		{"part type in a later part", "application/json", `{"model":"gpt-4","messages":[{"role":"assistant","content":[{"type":"text","text":"a"},{"type":"image_url"}]}]}`, 400, "messages[0].content[1].type", `part type "image_url" is not allowed here (text, refusal for role assistant)`},
		{"wrong type", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}`, 400, "temperature", "expected a number"},
		{"temperature too high", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"temperature":2.5}`, 400, "temperature", "at most 2"},
		{"top_p negative", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"top_p":-0.1}`, 400, "top_p", "at least 0"},
		{"max_tokens zero", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"max_tokens":0}`, 400, "max_tokens", "at least 1"},
		{"five stops", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"stop":["a","b","c","d","e"]}`, 400, "stop", "at most 4"},
		{"n too big", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"n":129}`, 400, "n", "at most 128"},
		{"tool without id", "application/json", `{"model":"gpt-4","messages":[{"role":"tool","content":"42"}]}`, 400, "messages[0].tool_call_id", "required for a tool message"},
		{"null content", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":null}]}`, 400, "messages[0].content", "is required"},
		{"empty parts", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":[]}]}`, 400, "messages[0].content", "non-empty"},
		{"image for system", "application/json", `{"model":"gpt-4","messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, 400, "messages[0].content[0].type", "not allowed"},
		{"content number", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":5}]}`, 400, "", "content must be a string"},
		{"top_logprobs alone", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"top_logprobs":3}`, 400, "top_logprobs", "logprobs: true"},
		{"too many messages", "application/json", long, 400, "messages", "at most 4 messages"},
		{"logit bias out of range", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"logit_bias":{"50256":-101}}`, 400, "logit_bias[50256]", "at least -100"},
		{"stop empty array", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"stop":[]}`, 400, "stop", `empty array`},
		{"text part without text", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text"}]}]}`, 400, "messages[0].content[1].text", `is required for a text part`},
		{"text part with null text", "application/json", `{"model":"gpt-4","messages":[{"role":"system","content":[{"type":"text","text":null}]},{"role":"user","content":"hi"}]}`, 400, "messages[0].content[0].text", `is required for a text part`},
		{"tools not an array", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"tools":{}}`, 400, "tools", `must be an array`},
		{"tool without type", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"tools":[{"function":{"name":"f"}}]}`, 400, "tools[0].type", `is required`},
		{"tool of another type", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"retrieval"}]}`, 400, "tools[0].type", `must be function or custom, got "retrieval"`},
		{"function tool without function", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function"}]}`, 400, "tools[0].function", `is required`},
		{"function without name", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{}}]}`, 400, "tools[0].function.name", `is required`},
		{"function name with a space", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"a b"}}]}`, 400, "tools[1].function.name", `1 to 64 letters`},
		{"tool_choice without tools", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"tool_choice":"auto"}`, 400, "tool_choice", `only allowed when tools are given`},
		{"tool_choice unknown word", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"sometimes"}`, 400, "tool_choice", `got "sometimes"`},
		{"tool_choice function without name", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function"}}`, 400, "tool_choice", `tool_choice.function.name: is required`},
		{"response_format xml", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"xml"}}`, 400, "response_format.type", `got "xml"`},
		{"response_format json_schema without its schema", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema"}}`, 400, "response_format.json_schema", "with a name"},
		{"response_format a string", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"response_format":"json"}`, 400, "response_format", "must be an object"},
		{"tool_choice number", "application/json", `{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":3}`, 400, "tool_choice", `a string or an object`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ae := d.Decode([]byte(tc.ct), []byte(tc.body))
			if ae == nil {
				t.Fatal("accepted")
			}
			if ae.Status != tc.status || ae.Param != tc.param || !strings.Contains(ae.Message, tc.msg) {
				t.Fatalf("got %d param=%q %q; want %d param=%q containing %q", ae.Status, ae.Param, ae.Message, tc.status, tc.param, tc.msg)
			}
		})
	}
}

func TestDecodeAcceptsWhatOpenAIAccepts(t *testing.T) {
	d := NewDecoder(2048)
	for _, body := range []string{
		`{"model":"gpt-4","messages":[{"role":"user","content":"Hello"}],"temperature":0.7}`,
		`{"model":"gpt-4","messages":[{"role":"developer","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}`,
		`{"model":"gpt-4","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"42"}]}`,
		`{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"stop":"END","n":1,"top_p":1,"max_completion_tokens":5,"seed":7,"user":"u","some_future_field":{"x":1}}`,
		`{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":2,"logit_bias":{"50256":-100}}`,
		`{"model":"gpt-4","messages":[{"role":"user","content":[{"type":"text","text":""}]}],"stop":["a"],"tool_choice":null,"tools":null}`,
		`{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"get_weather-2","parameters":{"type":"object"}}},{"type":"custom","custom":{"name":"c"}}],"tool_choice":"required","parallel_tool_calls":false}`,
		`{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"f"}}}`,
		`{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object"},"strict":true}}}`,
		`{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}`,
		`{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"allowed_tools","allowed_tools":{"mode":"auto","tools":[]}}}`,
	} {
		req, ae := d.Decode([]byte("application/json; charset=utf-8"), []byte(body))
		if ae != nil {
			t.Errorf("%s: rejected: %s", body, ae.Message)
			continue
		}
		if string(req.Raw) != body {
			t.Errorf("Raw must keep the body as sent")
		}
	}
}

func BenchmarkDecodeReject(b *testing.B) {
	d := NewDecoder(2048)
	body := []byte(`{"model":"gpt-4","messages":[{"role":"robot","content":"Hello"}],"temperature":0.7}`)
	ct := []byte("application/json")
	b.ReportAllocs()
	for b.Loop() {
		if _, ae := d.Decode(ct, body); ae == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkDecodeValid(b *testing.B) {
	d := NewDecoder(2048)
	body := []byte(`{"model":"gpt-4","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Hello there, how are you today?"}],"temperature":0.7,"max_tokens":100}`)
	ct := []byte("application/json")
	b.ReportAllocs()
	for b.Loop() {
		req, ae := d.Decode(ct, body)
		if ae != nil {
			b.Fatal(ae.Message)
		}
		d.release(req) // as the server does once the answer is written
	}
}

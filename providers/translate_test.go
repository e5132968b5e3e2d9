package providers

import (
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// decodeRequest reads an OpenAI body the way the pipeline does.
func decodeRequest(t testing.TB, body string) *ChatRequest {
	t.Helper()
	var r ChatRequest
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	r.Raw = []byte(body)
	return &r
}

// sameJSON compares two JSON texts by value.
func sameJSON(t testing.TB, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got invalid JSON %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want invalid JSON %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestToAnthropicTranslates(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		stream bool
		want   string
	}{
		{"system and developer messages join the top-level system; default max_tokens",
			`{"model":"x","messages":[{"role":"system","content":"Be brief."},{"role":"developer","content":[{"type":"text","text":"Be kind."}]},{"role":"user","content":"hi"}]}`, false,
			`{"model":"claude","max_tokens":1024,"system":"Be brief.\n\nBe kind.","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`},
		{"a system message in the middle still goes to the top",
			`{"model":"x","messages":[{"role":"user","content":"a"},{"role":"system","content":"S"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}]}`, false,
			`{"model":"claude","max_tokens":1024,"system":"S","messages":[{"role":"user","content":[{"type":"text","text":"a"}]},{"role":"assistant","content":[{"type":"text","text":"b"}]},{"role":"user","content":[{"type":"text","text":"c"}]}]}`},
		{"consecutive turns of one role merge; empty text is left out",
			`{"model":"x","messages":[{"role":"user","content":"a"},{"role":"user","content":[{"type":"text","text":"b"},{"type":"text","text":""}]},{"role":"assistant","content":""},{"role":"user","content":"c"}]}`, false,
			`{"model":"claude","max_tokens":1024,"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"},{"type":"text","text":"c"}]}]}`},
		{"max_completion_tokens wins over max_tokens; temperature above 1 is clamped; stop; user; stream",
			`{"model":"x","messages":[{"role":"user","content":"hi"}],"max_tokens":50,"max_completion_tokens":20,"temperature":1.7,"top_p":0.9,"stop":["END","  ","\n",""],"user":"u-42"}`, true,
			`{"model":"claude","max_tokens":20,"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"temperature":1,"top_p":0.9,"stop_sequences":["END"],"stream":true,"metadata":{"user_id":"u-42"}}`},
		{"temperature up to 1 keeps its value; a lone stop string",
			`{"model":"x","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"temperature":0.3,"stop":"###"}`, false,
			`{"model":"claude","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"temperature":0.3,"stop_sequences":["###"]}`},
		{"harmless parameters are dropped",
			`{"model":"x","messages":[{"role":"user","content":"hi","name":"bob"}],"seed":1,"presence_penalty":1,"frequency_penalty":-1,"n":1,"logprobs":false,"response_format":{"type":"text"},"stream_options":{"include_usage":true},"store":true}`, false,
			`{"model":"claude","max_tokens":1024,"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`},
		{"tools, tool calls and tool results",
			`{"model":"x","messages":[
				{"role":"user","content":"weather?"},
				{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},{"id":"call_2","type":"function","function":{"name":"now","arguments":""}}]},
				{"role":"tool","tool_call_id":"call_1","content":"sunny"},
				{"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"noon"}]},
				{"role":"user","content":"thanks"}],
			 "tools":[{"type":"function","function":{"name":"get_weather","description":"Weather now","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},{"type":"function","function":{"name":"now"}}],
			 "tool_choice":"required","parallel_tool_calls":false}`, false,
			`{"model":"claude","max_tokens":1024,"messages":[
				{"role":"user","content":[{"type":"text","text":"weather?"}]},
				{"role":"assistant","content":[{"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}},{"type":"tool_use","id":"call_2","name":"now","input":{}}]},
				{"role":"user","content":[{"type":"tool_result","tool_use_id":"call_1","content":"sunny"},{"type":"tool_result","tool_use_id":"call_2","content":"noon"},{"type":"text","text":"thanks"}]}],
			 "tools":[{"name":"get_weather","description":"Weather now","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}},{"name":"now","input_schema":{"type":"object","properties":{}}}],
			 "tool_choice":{"type":"any","disable_parallel_tool_use":true}}`},
		{"named tool choice",
			`{"model":"x","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"f"}}}`, false,
			`{"model":"claude","max_tokens":1024,"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"f"}}`},
		{"tool choice auto and none",
			`{"model":"x","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"none","parallel_tool_calls":false}`, false,
			`{"model":"claude","max_tokens":1024,"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"tools":[{"name":"f","input_schema":{"type":"object","properties":{}}}],"tool_choice":{"type":"none"}}`},
		{"tool choice without tools is dropped",
			`{"model":"x","messages":[{"role":"user","content":"hi"}],"tool_choice":"auto"}`, false,
			`{"model":"claude","max_tokens":1024,"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`},
		{"images: data URL and https URL",
			`{"model":"x","messages":[{"role":"user","content":[{"type":"text","text":"what is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"low"}},{"type":"image_url","image_url":{"url":"https://example.com/cat.jpg"}}]}]}`, false,
			`{"model":"claude","max_tokens":1024,"messages":[{"role":"user","content":[{"type":"text","text":"what is this?"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},{"type":"image","source":{"type":"url","url":"https://example.com/cat.jpg"}}]}]}`},
		{"a final assistant message stays a prefill",
			`{"model":"x","messages":[{"role":"user","content":"count"},{"role":"assistant","content":[{"type":"text","text":"1, 2,"},{"type":"refusal","refusal":"no"}]}]}`, false,
			`{"model":"claude","max_tokens":1024,"messages":[{"role":"user","content":[{"type":"text","text":"count"}]},{"role":"assistant","content":[{"type":"text","text":"1, 2,"}]}]}`},
	}
	s := ProviderSettings{DefaultMaxTokens: 0} // zero: the documented default
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := toAnthropic(decodeRequest(t, tt.body), "claude", s, tt.stream)
			if err != nil {
				t.Fatal(err)
			}
			sameJSON(t, got, tt.want)
		})
	}
	t.Run("configured default max tokens", func(t *testing.T) {
		got, err := toAnthropic(userRequest("hi"), "c", ProviderSettings{DefaultMaxTokens: 77}, false)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, got, `{"model":"c","max_tokens":77,"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`)
	})
}

func TestToAnthropicRefusesWhatItCannotTranslate(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		param string
	}{
		{"n above 1", `{"model":"x","messages":[{"role":"user","content":"hi"}],"n":2}`, "n"},
		{"logprobs", `{"model":"x","messages":[{"role":"user","content":"hi"}],"logprobs":true}`, "logprobs"},
		{"top_logprobs", `{"model":"x","messages":[{"role":"user","content":"hi"}],"logprobs":false,"top_logprobs":3}`, "top_logprobs"},
		{"logit_bias", `{"model":"x","messages":[{"role":"user","content":"hi"}],"logit_bias":{"50256":-100}}`, "logit_bias"},
		{"json mode", `{"model":"x","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}`, "response_format"},
		{"audio part", `{"model":"x","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AAA","format":"wav"}}]}]}`, "messages[0].content[0]"},
		{"image part in a system message", `{"model":"x","messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]},{"role":"user","content":"hi"}]}`, "messages[0].content[0]"},
		{"image of an unsupported type", `{"model":"x","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/tiff;base64,AAAA"}}]}]}`, "messages[0].content[0].image_url"},
		{"image data URL that is not base64", `{"model":"x","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,rawbytes"}}]}]}`, "messages[0].content[0].image_url"},
		{"tool call arguments that are not an object", `{"model":"x","messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}`, "messages[1].tool_calls[0].function.arguments"},
		{"tool message without its call id", `{"model":"x","messages":[{"role":"user","content":"hi"},{"role":"tool","content":"r"}]}`, "messages[1].tool_call_id"},
		{"a custom tool", `{"model":"x","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"custom","custom":{"name":"c"}}]}`, "tools[0]"},
		{"an unknown tool choice", `{"model":"x","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"sometimes"}`, "tool_choice"},
		{"only system messages", `{"model":"x","messages":[{"role":"system","content":"S"}]}`, "messages"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := toAnthropic(decodeRequest(t, tt.body), "claude", ProviderSettings{}, false)
			var pe *Error
			if !errors.As(err, &pe) || pe.Class != ClassInvalid || pe.Param != tt.param || pe.Message == "" {
				t.Fatalf("got %#v, want an invalid error naming %s", err, tt.param)
			}
		})
	}
}

func TestFromAnthropicTranslates(t *testing.T) {
	body := `{"id":"msg_01","type":"message","role":"assistant","model":"claude-3-5-sonnet",
		"content":[{"type":"thinking","thinking":"hmm"},{"type":"text","text":"Hello, "},{"type":"text","text":"world."},
		           {"type":"tool_use","id":"toolu_1","name":"search","input":{"q":"x"}}],
		"stop_reason":"tool_use","stop_sequence":null,
		"usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":3,"cache_creation_input_tokens":2}}`
	cr, err := fromAnthropic([]byte(body), 1700000000)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(cr)
	sameJSON(t, got, `{"id":"msg_01","object":"chat.completion","created":1700000000,"model":"claude-3-5-sonnet",
		"choices":[{"index":0,"message":{"role":"assistant","content":"Hello, world.","refusal":null,
		  "tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"search","arguments":"{\"q\":\"x\"}"}}]},
		  "logprobs":null,"finish_reason":"tool_calls"}],
		"usage":{"prompt_tokens":15,"completion_tokens":5,"total_tokens":20}}`)
	if cr.Raw != nil {
		t.Error("a translated answer has no Raw")
	}

	t.Run("tool use only has null content", func(t *testing.T) {
		cr, err := fromAnthropic([]byte(`{"type":"message","content":[{"type":"tool_use","id":"t","name":"f"}],"stop_reason":"tool_use"}`), 0)
		if err != nil || cr.Choices[0].Message.Content != nil || !strings.Contains(string(cr.Choices[0].Message.ToolCalls), `"arguments":"{}"`) {
			t.Errorf("got %+v %v", cr, err)
		}
	})
	t.Run("every stop reason", func(t *testing.T) {
		for stop, want := range map[string]string{
			"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
			"refusal": "content_filter", "pause_turn": "stop", "": "stop",
		} {
			cr, err := fromAnthropic([]byte(`{"type":"message","content":[],"stop_reason":"`+stop+`"}`), 0)
			if err != nil || cr.Choices[0].FinishReason != want || cr.Text() != "" {
				t.Errorf("%q: got %+v %v, want %s", stop, cr, err, want)
			}
		}
	})
	t.Run("not a message", func(t *testing.T) {
		for _, b := range []string{``, `{`, `[]`, `{"type":"error","error":{"type":"api_error"}}`, `{"type":"message"}`, `{"type":"message","content":"text"}`, `{"id":"msg_0","type":"mess`} {
			if _, err := fromAnthropic([]byte(b), 0); err == nil {
				t.Errorf("%q accepted", b)
			}
		}
	})
}

func TestAnthropicStreamDecoderTranslatesEvents(t *testing.T) {
	events := []struct{ name, data string }{
		{"message_start", `{"type":"message_start","message":{"id":"msg_9","type":"message","role":"assistant","model":"claude","content":[],"usage":{"input_tokens":12,"output_tokens":1}}}`},
		{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`},
		{"ping", `{"type":"ping"}`},
		{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}`},
		{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there"}}`},
		{"content_block_stop", `{"type":"content_block_stop","index":0}`},
		{"content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}`},
		{"content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}`},
		{"content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"1}"}}`},
		{"some_future_event", `{"type":"some_future_event"}`},
		{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":7}}`},
		{"message_stop", `{"type":"message_stop"}`},
	}
	d := newAnthropicStreamDecoder(42)
	var got []string
	for i, ev := range events {
		c, err := d.decode(sseEvent{name: []byte(ev.name), data: []byte(ev.data)})
		if i == len(events)-1 {
			if err != io.EOF || c != nil {
				t.Fatalf("message_stop: %v %v", c, err)
			}
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", ev.name, err)
		}
		if c == nil {
			continue
		}
		if c.ID != "msg_9" || c.Model != "claude" || c.Created != 42 || c.Object != "chat.completion.chunk" {
			t.Errorf("chunk header %+v", c)
		}
		b, _ := json.Marshal(c.Choices)
		if c.Usage != nil {
			u, _ := json.Marshal(c.Usage)
			b = append(append(b, " usage="...), u...)
		}
		got = append(got, string(b))
	}
	want := []string{
		`[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]`,
		`[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}]`,
		`[{"index":0,"delta":{"content":" there"},"logprobs":null,"finish_reason":null}]`,
		`[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"toolu_1","type":"function","function":{"name":"f","arguments":""}}]},"logprobs":null,"finish_reason":null}]`,
		`[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":"}}]},"logprobs":null,"finish_reason":null}]`,
		`[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]},"logprobs":null,"finish_reason":null}]`,
		`[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}] usage={"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestAnthropicStreamErrorEventsAreClassified(t *testing.T) {
	tests := map[string]Class{
		"overloaded_error":      ClassOverloaded,
		"api_error":             ClassServer,
		"rate_limit_error":      ClassRateLimited,
		"authentication_error":  ClassAuth,
		"invalid_request_error": ClassInvalid,
		"timeout_error":         ClassServer,
		"brand_new_error":       ClassServer,
	}
	for typ, want := range tests {
		d := newAnthropicStreamDecoder(0)
		_, err := d.decode(sseEvent{name: []byte("error"), data: []byte(`{"type":"error","error":{"type":"` + typ + `","message":"m"}}`)})
		var ee *streamEventError
		if !errors.As(err, &ee) || classOfErrorType(ee.detail.Type) != want || ee.detail.Message != "m" {
			t.Errorf("%s: got %v", typ, err)
		}
	}
}

func FuzzFromAnthropic(f *testing.F) {
	f.Add([]byte(`{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}`))
	f.Add([]byte(`{"type":"message","content":[{"type":"tool_use","id":"t","name":"f","input":{"a":[1,{}]}}],"stop_reason":"tool_use"}`))
	f.Add([]byte(`{"type":"message","content":[{"type":"tool_use","input":null},{"type":"text"}]}`))
	f.Add([]byte(`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`))
	f.Add([]byte(`{"type":"message","content":[{"type":"text","text":"\u00e9\ud83d\ude00"}],"usage":{"input_tokens":-5}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		cr, err := fromAnthropic(body, 1)
		if err != nil {
			return
		}
		if len(cr.Choices) != 1 || cr.Object != "chat.completion" {
			t.Fatalf("got %+v", cr)
		}
		out, err := json.Marshal(cr)
		if err != nil || !json.Valid(out) {
			t.Fatalf("answer does not marshal: %v", err)
		}
	})
}

func FuzzParseAnthropicStream(f *testing.F) {
	f.Add([]byte("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"m\",\"usage\":{\"input_tokens\":3}}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"))
	f.Add([]byte("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"))
	f.Add([]byte("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\"}}\n\nevent: content_block_delta\ndata: {\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n"))
	f.Add([]byte("data: {\"type\":\"message_stop\"}\n\n"))
	f.Add([]byte("event: message_start\r\ndata: {}\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		n := parseAll(t, in, newAnthropicStreamDecoder(0))
		if n > len(in) {
			t.Fatalf("%d chunks from %d bytes", n, len(in))
		}
	})
}

func BenchmarkToAnthropic(b *testing.B) {
	req := decodeRequest(b, `{"model":"claude-3-5-sonnet","messages":[
		{"role":"system","content":"You are a helpful assistant. Answer briefly."},
		{"role":"user","content":"What is the capital of France?"},
		{"role":"assistant","content":"Paris."},
		{"role":"user","content":[{"type":"text","text":"And of Italy? Explain in one sentence."}]}],
		"max_tokens":256,"temperature":0.7,"stop":["\n\n###"],"user":"user-123"}`)
	s := ProviderSettings{}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := toAnthropic(req, "claude-3-5-sonnet-20241022", s, false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFromAnthropic(b *testing.B) {
	body := []byte(`{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-3-5-sonnet-20241022","content":[{"type":"text","text":"Rome is the capital of Italy, and it has been since 1871."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":42,"output_tokens":17}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fromAnthropic(body, 1); err != nil {
			b.Fatal(err)
		}
	}
}

package mock_test

import (
	"strings"
	"testing"

	"github.com/llm-gateway/gateway/mock"
)

// The mock must reject what the real APIs reject, in their own error format,
// so that a wrong translation in the gateway fails a test.

func TestOpenAIRejectsWhatTheAPIRejects(t *testing.T) {
	const okMsgs = `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name      string
		body      string
		headers   []string // replaces the default auth headers when non-nil
		status    int
		param     any // string, or nil for JSON null
		code      any
		inMessage string
	}{
		{"bad JSON", `{"model":`, nil, 400, nil, nil, "could not parse the JSON body"},
		{"body not an object", `[1,2]`, nil, 400, nil, nil, "could not parse"},
		{"missing model", `{` + okMsgs + `}`, nil, 400, "model", nil, "you must provide a model parameter"},
		{"missing messages", `{"model":"gpt-4o"}`, nil, 400, "messages", "missing_required_parameter", "Missing required parameter: 'messages'"},
		{"empty messages", `{"model":"gpt-4o","messages":[]}`, nil, 400, "messages", "empty_array", "empty array"},
		{"unknown role", `{"model":"gpt-4o","messages":[{"role":"robot","content":"hi"}]}`, nil, 400, "messages[0].role", "invalid_value", "'robot'"},
		{"missing content", `{"model":"gpt-4o","messages":[{"role":"user"}]}`, nil, 400, "messages[0].content", "missing_required_parameter", ""},
		{"empty parts", `{"model":"gpt-4o","messages":[{"role":"user","content":[]}]}`, nil, 400, "messages[0].content", "empty_array", ""},
		{"image part in system", `{"model":"gpt-4o","messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, nil, 400, "messages[0].content[0].type", "invalid_value", ""},
		{"content of the wrong type", `{"model":"gpt-4o","messages":[{"role":"user","content":5}]}`, nil, 400, "messages[0].content", "invalid_type", ""},
		{"tool message without tool_call_id", `{"model":"gpt-4o","messages":[{"role":"tool","content":"r"}]}`, nil, 400, "messages[0].tool_call_id", "missing_required_parameter", ""},
		{"assistant with neither content nor tool_calls", `{"model":"gpt-4o","messages":[{"role":"assistant"}]}`, nil, 400, "messages[0].content", "missing_required_parameter", ""},
		{"temperature above 2", `{"model":"gpt-4o",` + okMsgs + `,"temperature":2.5}`, nil, 400, "temperature", "decimal_above_max_value", "Expected a value <= 2"},
		{"temperature below 0", `{"model":"gpt-4o",` + okMsgs + `,"temperature":-0.1}`, nil, 400, "temperature", "decimal_below_min_value", ""},
		{"temperature of the wrong type", `{"model":"gpt-4o",` + okMsgs + `,"temperature":"hot"}`, nil, 400, "temperature", "invalid_type", ""},
		{"top_p above 1", `{"model":"gpt-4o",` + okMsgs + `,"top_p":1.5}`, nil, 400, "top_p", "decimal_above_max_value", ""},
		{"presence_penalty below -2", `{"model":"gpt-4o",` + okMsgs + `,"presence_penalty":-3}`, nil, 400, "presence_penalty", "decimal_below_min_value", ""},
		{"n of 0", `{"model":"gpt-4o",` + okMsgs + `,"n":0}`, nil, 400, "n", "integer_below_min_value", ""},
		{"max_tokens of 0", `{"model":"gpt-4o",` + okMsgs + `,"max_tokens":0}`, nil, 400, "max_tokens", "integer_below_min_value", ""},
		{"max_completion_tokens not whole", `{"model":"gpt-4o",` + okMsgs + `,"max_completion_tokens":1.5}`, nil, 400, "max_completion_tokens", "invalid_type", ""},
		{"five stop sequences", `{"model":"gpt-4o",` + okMsgs + `,"stop":["a","b","c","d","e"]}`, nil, 400, "stop", "array_above_max_length", ""},
		{"top_logprobs without logprobs", `{"model":"gpt-4o",` + okMsgs + `,"top_logprobs":2}`, nil, 400, "top_logprobs", "invalid_value", ""},
		{"logit_bias out of range", `{"model":"gpt-4o",` + okMsgs + `,"logit_bias":{"42":101}}`, nil, 400, "logit_bias", "invalid_value", ""},
		{"stream_options without stream", `{"model":"gpt-4o",` + okMsgs + `,"stream_options":{"include_usage":true}}`, nil, 400, "stream_options", "invalid_value", ""},
		{"tool without a name", `{"model":"gpt-4o",` + okMsgs + `,"tools":[{"type":"function","function":{}}]}`, nil, 400, "tools[0].function.name", "missing_required_parameter", ""},
		{"tool_choice without tools", `{"model":"gpt-4o",` + okMsgs + `,"tool_choice":"auto"}`, nil, 400, "tool_choice", "invalid_value", ""},
		{"unknown model", `{"model":"unknown-gpt",` + okMsgs + `}`, nil, 404, nil, "model_not_found", "does not exist"},
		{"missing auth header", `{"model":"gpt-4o",` + okMsgs + `}`, []string{}, 401, nil, "invalid_api_key", "You didn't provide an API key"},
		{"auth without Bearer", `{"model":"gpt-4o",` + okMsgs + `}`, []string{"Authorization", "sk-test"}, 401, nil, "invalid_api_key", ""},
		{"x-api-key is not OpenAI's auth", `{"model":"gpt-4o",` + okMsgs + `}`, []string{"x-api-key", "sk-test"}, 401, nil, "invalid_api_key", ""},
	}
	s, base := startMock(t, mock.Config{})
	c := httpClient(t)
	addFault(t, s, mock.Rule{Fault: mock.FaultServerError}) // must never be reached
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := oaHeaders
			if tt.headers != nil {
				h = tt.headers
			}
			res := post(t, c, base+"/v1/chat/completions", tt.body, h...)
			if res.status != tt.status {
				t.Fatalf("status = %d, want %d\n%s", res.status, tt.status, res.body)
			}
			if ct := res.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			v := decode(t, res.body)
			if len(v) != 1 || len(path(v, "error").(map[string]any)) != 4 {
				t.Errorf("error body has other fields than error.{message,type,param,code}: %s", res.body)
			}
			if typ := path(v, "error", "type"); typ != "invalid_request_error" {
				t.Errorf("type = %v", typ)
			}
			if p := path(v, "error", "param"); p != tt.param {
				t.Errorf("param = %#v, want %#v", p, tt.param)
			}
			if code := path(v, "error", "code"); code != tt.code {
				t.Errorf("code = %#v, want %#v", code, tt.code)
			}
			if msg, _ := path(v, "error", "message").(string); !strings.Contains(msg, tt.inMessage) {
				t.Errorf("message = %q, want it to contain %q", msg, tt.inMessage)
			}
		})
	}
	st := s.Stats()
	if st.Outcome("openai", mock.FaultServerError) != 0 || len(s.Faults()) != 1 {
		t.Errorf("a rejected request consumed a fault: stats %+v", st["openai"])
	}
	if st.Outcome("openai", mock.OutcomeAuth) != 3 || st.Outcome("openai", mock.OutcomeInvalid) != int64(len(tests)-3) {
		t.Errorf("outcomes = %+v", st["openai"].Outcomes)
	}
}

func TestOpenAIAcceptsWhatTheAPIAccepts(t *testing.T) {
	tests := []struct{ name, body string }{
		{"unknown fields", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi","x_extra":1}],"response_format":{"type":"text"},"some_future_field":true}`},
		{"nulls for optional fields", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":null,"stop":null,"max_tokens":null}`},
		{"every role", `{"model":"gpt-4o","messages":[{"role":"developer","content":"d"},{"role":"system","content":[{"type":"text","text":"s"}]},{"role":"user","content":[{"type":"text","text":"q"},{"type":"image_url","image_url":{"url":"data:,"}}]},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"r"}]}`},
		{"edges of the ranges", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":2,"top_p":0,"n":128,"frequency_penalty":-2,"logprobs":true,"top_logprobs":20,"logit_bias":{"1":-100},"stop":"x"}`},
	}
	_, base := startMock(t, mock.Config{})
	c := httpClient(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if res := post(t, c, base+"/v1/chat/completions", tt.body, oaHeaders...); res.status != 200 {
				t.Errorf("status = %d\n%s", res.status, res.body)
			}
		})
	}
}

func TestAnthropicRejectsWhatTheAPIRejects(t *testing.T) {
	const okMsgs = `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name      string
		body      string
		headers   []string
		status    int
		typ       string
		inMessage string
	}{
		{"bad JSON", `{"model":`, nil, 400, "invalid_request_error", "not valid JSON"},
		{"missing model", `{"max_tokens":10,` + okMsgs + `}`, nil, 400, "invalid_request_error", "model: Field required"},
		{"missing max_tokens", `{"model":"claude-3-5-sonnet",` + okMsgs + `}`, nil, 400, "invalid_request_error", "max_tokens: Field required"},
		{"max_tokens of 0", `{"model":"claude-3-5-sonnet","max_tokens":0,` + okMsgs + `}`, nil, 400, "invalid_request_error", "greater than or equal to 1"},
		{"max_tokens of the wrong type", `{"model":"claude-3-5-sonnet","max_tokens":"ten",` + okMsgs + `}`, nil, 400, "invalid_request_error", "max_tokens: Input should be a valid number"},
		{"missing messages", `{"model":"claude-3-5-sonnet","max_tokens":10}`, nil, 400, "invalid_request_error", "messages: Field required"},
		{"empty messages", `{"model":"claude-3-5-sonnet","max_tokens":10,"messages":[]}`, nil, 400, "invalid_request_error", "at least 1 item"},
		{"system role inside messages", `{"model":"claude-3-5-sonnet","max_tokens":10,"messages":[{"role":"system","content":"s"},{"role":"user","content":"hi"}]}`, nil, 400, "invalid_request_error", `Unexpected role "system"`},
		{"tool role inside messages", `{"model":"claude-3-5-sonnet","max_tokens":10,"messages":[{"role":"tool","content":"s"}]}`, nil, 400, "invalid_request_error", "messages.0.role"},
		{"empty content before the end", `{"model":"claude-3-5-sonnet","max_tokens":10,"messages":[{"role":"user","content":""},{"role":"assistant","content":"a"}]}`, nil, 400, "invalid_request_error", "non-empty content"},
		{"empty text block", `{"model":"claude-3-5-sonnet","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":""}]}]}`, nil, 400, "invalid_request_error", "text content blocks must be non-empty"},
		{"block without type", `{"model":"claude-3-5-sonnet","max_tokens":10,"messages":[{"role":"user","content":[{"text":"x"}]}]}`, nil, 400, "invalid_request_error", "messages.0.content.0.type"},
		{"OpenAI-style image part", `{"model":"claude-3-5-sonnet","max_tokens":10,"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, nil, 400, "invalid_request_error", "'image_url'"},
		{"tool_result in an assistant turn", `{"model":"claude-3-5-sonnet","max_tokens":10,"messages":[{"role":"assistant","content":[{"type":"tool_result","tool_use_id":"t"}]}]}`, nil, 400, "invalid_request_error", "tool_result"},
		{"temperature above 1", `{"model":"claude-3-5-sonnet","max_tokens":10,` + okMsgs + `,"temperature":1.5}`, nil, 400, "invalid_request_error", "temperature: Input should be less than or equal to 1"},
		{"temperature below 0", `{"model":"claude-3-5-sonnet","max_tokens":10,` + okMsgs + `,"temperature":-1}`, nil, 400, "invalid_request_error", "temperature"},
		{"stop_sequences as a string", `{"model":"claude-3-5-sonnet","max_tokens":10,` + okMsgs + `,"stop_sequences":"x"}`, nil, 400, "invalid_request_error", "stop_sequences: Input should be a valid list"},
		{"blank stop sequence", `{"model":"claude-3-5-sonnet","max_tokens":10,` + okMsgs + `,"stop_sequences":[" "]}`, nil, 400, "invalid_request_error", "non-whitespace"},
		{"system of the wrong shape", `{"model":"claude-3-5-sonnet","max_tokens":10,` + okMsgs + `,"system":[{"type":"image"}]}`, nil, 400, "invalid_request_error", "system.0.type"},
		{"tool without input_schema", `{"model":"claude-3-5-sonnet","max_tokens":10,` + okMsgs + `,"tools":[{"name":"f"}]}`, nil, 400, "invalid_request_error", "input_schema"},
		{"OpenAI-style tool", `{"model":"claude-3-5-sonnet","max_tokens":10,` + okMsgs + `,"tools":[{"type":"function","function":{"name":"f"}}]}`, nil, 400, "invalid_request_error", "tools.0.name"},
		{"unknown model", `{"model":"unknown-claude","max_tokens":10,` + okMsgs + `}`, nil, 404, "not_found_error", "model: unknown-claude"},
		{"missing anthropic-version", `{"model":"claude-3-5-sonnet","max_tokens":10,` + okMsgs + `}`, []string{"x-api-key", "k"}, 400, "invalid_request_error", "anthropic-version: header is required"},
		{"malformed anthropic-version", `{"model":"claude-3-5-sonnet","max_tokens":10,` + okMsgs + `}`, []string{"x-api-key", "k", "anthropic-version", "latest"}, 400, "invalid_request_error", "anthropic-version"},
		{"missing key", `{"model":"claude-3-5-sonnet","max_tokens":10,` + okMsgs + `}`, []string{"anthropic-version", "2023-06-01"}, 401, "authentication_error", "x-api-key header is required"},
	}
	s, base := startMock(t, mock.Config{})
	c := httpClient(t)
	addFault(t, s, mock.Rule{Fault: mock.FaultOverloaded})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := anHeaders
			if tt.headers != nil {
				h = tt.headers
			}
			res := post(t, c, base+"/v1/messages", tt.body, h...)
			if res.status != tt.status {
				t.Fatalf("status = %d, want %d\n%s", res.status, tt.status, res.body)
			}
			v := decode(t, res.body)
			rid := res.header.Get("request-id")
			if len(v) != 3 || path(v, "type") != "error" || path(v, "request_id") != rid || !strings.HasPrefix(rid, "req_") {
				t.Errorf("envelope is not {type:error, error, request_id = the request-id header %q}: %s", rid, res.body)
			}
			if typ := path(v, "error", "type"); typ != tt.typ {
				t.Errorf("error.type = %v, want %s", typ, tt.typ)
			}
			if msg, _ := path(v, "error", "message").(string); !strings.Contains(msg, tt.inMessage) {
				t.Errorf("message = %q, want it to contain %q", msg, tt.inMessage)
			}
		})
	}
	if n := s.Stats().Outcome("anthropic", mock.FaultOverloaded); n != 0 || len(s.Faults()) != 1 {
		t.Errorf("a rejected request consumed a fault")
	}
}

func TestAnthropicAcceptsWhatTheAPIAccepts(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		headers []string
	}{
		{"unknown fields", `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"metadata":{"user_id":"u"},"future":1}`, nil},
		{"Authorization Bearer instead of x-api-key", `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`, []string{"Authorization", "Bearer k", "anthropic-version", "2023-06-01"}},
		{"consecutive turns of one role and a prefill", `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"assistant","content":""}]}`, nil},
		{"system as a string and as blocks", `{"model":"m","max_tokens":10,"system":"s","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`, nil},
		{"a tool round trip", `{"model":"m","max_tokens":10,"system":[{"type":"text","text":"s"}],"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"f"},"messages":[{"role":"user","content":"q [tool]"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"r"}]}]}`, nil},
		{"edges of the ranges", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"hi"}],"temperature":1,"top_p":0,"top_k":0}`, nil},
	}
	_, base := startMock(t, mock.Config{})
	c := httpClient(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := anHeaders
			if tt.headers != nil {
				h = tt.headers
			}
			if res := post(t, c, base+"/v1/messages", tt.body, h...); res.status != 200 {
				t.Errorf("status = %d\n%s", res.status, res.body)
			}
		})
	}
}

func TestRequiredKeysAreEnforced(t *testing.T) {
	_, base := startMock(t, mock.Config{OpenAIKey: "sk-right", AnthropicKey: "ant-right"})
	c := httpClient(t)
	oaBody := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`
	anBody := `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	tests := []struct {
		name    string
		url     string
		body    string
		headers []string
		status  int
	}{
		{"OpenAI right key", "/v1/chat/completions", oaBody, []string{"Authorization", "Bearer sk-right"}, 200},
		{"OpenAI wrong key", "/v1/chat/completions", oaBody, []string{"Authorization", "Bearer sk-wrong"}, 401},
		{"Anthropic right key", "/v1/messages", anBody, []string{"x-api-key", "ant-right", "anthropic-version", "2023-06-01"}, 200},
		{"Anthropic right key as Bearer", "/v1/messages", anBody, []string{"Authorization", "Bearer ant-right", "anthropic-version", "2023-06-01"}, 200},
		{"Anthropic wrong key", "/v1/messages", anBody, []string{"x-api-key", "ant-wrong", "anthropic-version", "2023-06-01"}, 401},
		{"Anthropic given the OpenAI key", "/v1/messages", anBody, []string{"x-api-key", "sk-right", "anthropic-version", "2023-06-01"}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if res := post(t, c, base+tt.url, tt.body, tt.headers...); res.status != tt.status {
				t.Errorf("status = %d, want %d\n%s", res.status, tt.status, res.body)
			}
		})
	}
}

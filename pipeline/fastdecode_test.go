package pipeline

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/llm-gateway/gateway/providers"
)

// fastDecodeCases are bodies of every shape the one-pass decoder meets. Each
// is checked against encoding/json: decoded the same, or left to it.
var fastDecodeCases = []string{
	`{"model":"gpt-4","messages":[{"role":"user","content":"Hello"}],"temperature":0.7}`,
	`{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}]}`,
	` { "model" : "m" , "messages" : [ { "role" : "user" , "content" : "x" } ] } `,
	"{\n\t\"model\": \"m\",\r\n\"messages\": []}",
	`{"model":"gpt-4","stream":true,"stream_options":{"include_usage":true,"future":[1,{"a":null}]},"messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:,"}}]}]}`,
	`{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"r","name":"n"}]}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"stop":"END","n":1,"top_p":1,"max_completion_tokens":5,"seed":-7,"user":"u","some_future_field":{"x":[true,false,null,-1.5e-3,"\u00e9\n"]}}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":2,"logit_bias":{"50256":-100,"1":0.5,"1":2},"parallel_tool_calls":false}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"tool_choice":"auto","response_format":{"type":"json_object"}}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"tools":null,"stop":null,"stream_options":null,"logit_bias":null,"temperature":null,"seed":null,"stream":null,"user":null}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"stop":[],"logit_bias":{},"stream_options":{}}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"hi"}],"stop":["a","b\"c","\ud83d\ude00"]}`,
	`{"model":"gpt-\u0034","messages":[{"role":"user","content":"tab\there \\ \/ \b\f\r"}]}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":[{"type":"text","text":"a\nb"},{"text":"no type"},{"type":"text","extra":{"deep":[[[]]]}}]}]}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"max_tokens":0,"n":-0,"temperature":-0.0,"top_p":1E2,"presence_penalty":2e-1}`,
	// Left to encoding/json: every one of these must make decodeFast
	// return false (or agree with encoding/json).
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"max_tokens":99999999999999999999,"temperature":1e400}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"n":1.0}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"n":1e2}`,
	`{"Model":"gpt-4","messages":[{"role":"user","content":"x"}]}`,
	`{"MODEL":"gpt-4","model":"x","messages":[{"ROLE":"user","content":"x"}]}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":[{"TYPE":"text","text":"x"}]}]}`,
	"{\"model\":\"gpt-4\",\"me\u017fsages\":[]}",
	`{"model":"a","model":"b","messages":[]}`,
	`{"model":"gpt-4","messages":[{"role":"user","name":"x"}],"messages":[{"role":"user"}]}`,
	`{"model":"gpt-4","messages":[{"role":"user","role":"system","content":"x"}]}`,
	`{"mod\u0065l":"gpt-4","messages":[]}`,
	`{"model":"gpt-4","messages":[null,{"role":"user","content":"x"}]}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":[null]}]}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":["text"]}]}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":5}]}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":{"type":"text"}}]}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"stop":[null,"a"]}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"stop":5}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"logit_bias":{"1":null}}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"stream":"true"}`,
	`{"model":5,"messages":[]}`,
	`{"model":"gpt-4","messages":{}}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"},]}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}]} trailing`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}]}{}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"x":01}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"x":-}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"x":1.}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"x":.5}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"x":1e}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"x":tru}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"x":"\x"}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"x":"\u12"}`,
	"{\"model\":\"gpt-4\",\"messages\":[{\"role\":\"user\",\"content\":\"raw\ttab\"}]}",
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"x":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`,
	`{"model":"gpt-4","messages":[{"role":"user","content":"x"}]`,
	`{"model":"gpt-4",`,
	`{"model"}`,
	`{"model":}`,
	`{,"model":"m"}`,
	`{}`,
	`[]`,
	`"model"`,
}

// checkFastDecode decodes body both ways; when decodeFast accepts it,
// encoding/json must accept it too and decode the same request.
func checkFastDecode(t *testing.T, body []byte) (fast bool) {
	t.Helper()
	var got providers.ChatRequest
	ok, agrees := decodeFast(body, &got, nil)
	if !ok {
		return false
	}
	var want providers.ChatRequest
	if err := json.Unmarshal(body, &want); err != nil {
		t.Fatalf("decodeFast accepted what encoding/json refuses (%v):\n%s", err, body)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeFast and encoding/json differ on\n%s\nfast: %#v\njson: %#v", body, got, want)
	}
	// A pooled request's room for messages still holds the last request's:
	// none of it may show through.
	room := make([]providers.Message, 4)
	for i := range room {
		room[i] = providers.Message{Role: "stale", Name: "stale", ToolCallID: "stale", ToolCalls: json.RawMessage(`[1]`),
			Content: providers.Content{Text: "stale", Kind: providers.ContentString, Parts: []providers.ContentPart{{Type: "text", Text: "stale"}}}}
	}
	var roomed providers.ChatRequest
	if ok, _ := decodeFast(body, &roomed, room[:0]); !ok || !reflect.DeepEqual(roomed, want) {
		t.Fatalf("decodeFast into a used room differs from encoding/json on\n%s\nfast: %#v\njson: %#v", body, roomed, want)
	}
	if agrees {
		checkRawAgrees(t, body, &got)
	}
	return true
}

// checkRawAgrees checks what providers.ChatRequest.RawAgrees promises the
// OpenAI adapter, reading body's top-level keys with gjson as the adapter
// would without it: "model" at most once and with the value of Model,
// "stream" at most once and true exactly when Stream is, "stream_options"
// once exactly when StreamOptions is set.
func checkRawAgrees(t *testing.T, body []byte, r *providers.ChatRequest) {
	t.Helper()
	n := map[string]int{}
	gjson.ParseBytes(body).ForEach(func(k, v gjson.Result) bool {
		n[k.Str]++
		switch k.Str {
		case "model":
			if v.Type == gjson.String && v.Str != r.Model || v.Type != gjson.String && r.Model != "" {
				t.Fatalf("RawAgrees, but the body's model %s is not Model %q:\n%s", v.Raw, r.Model, body)
			}
		case "stream":
			if (v.Type == gjson.True) != r.Stream {
				t.Fatalf("RawAgrees, but the body's stream %s is not Stream %v:\n%s", v.Raw, r.Stream, body)
			}
		}
		return true
	})
	if n["model"] > 1 || n["stream"] > 1 || n["stream_options"] > 1 {
		t.Fatalf("RawAgrees, but a key is repeated (%v):\n%s", n, body)
	}
	if (n["stream_options"] == 1) != (r.StreamOptions != nil) {
		t.Fatalf("RawAgrees, but stream_options is in the body %d time(s) and StreamOptions is %v:\n%s", n["stream_options"], r.StreamOptions, body)
	}
}

func TestDecodeFastAgreesWithEncodingJSON(t *testing.T) {
	fast := 0
	for _, body := range fastDecodeCases {
		if checkFastDecode(t, []byte(body)) {
			fast++
		}
	}
	// The ordinary requests (the first 15) must take the fast path, or it
	// buys nothing.
	for _, body := range fastDecodeCases[:15] {
		var r providers.ChatRequest
		if ok, _ := decodeFast([]byte(body), &r, nil); !ok {
			t.Errorf("an ordinary request left the fast path:\n%s", body)
		}
	}
	t.Logf("%d of %d bodies decoded by the fast path", fast, len(fastDecodeCases))
}

// The answers of Decode do not depend on the path: an invalid body gets
// encoding/json's explanation.
func TestDecodeFastFallbackExplains(t *testing.T) {
	for body, want := range map[string]string{
		`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"n":1.5}`:           "n: expected an integer, got JSON number 1.5",
		`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],}`:                  "the request body is not valid JSON",
		`{"model":"gpt-4","messages":[{"role":"user","content":5}]}`:                     "content must be a string, an array of parts or null",
		`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"stream":"true"}`:   "stream: expected a boolean, got JSON string",
		`{"Model":"gpt-4","messages":[{"role":"robot","content":"x"}]}`:                  "messages[0].role: must be one of",
		`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"temperature":3}`:   "temperature: must be at most 2",
		`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"stop":[1]}`:        "stop must be a string or an array of strings",
		`{"model":"gpt-4","messages":[{"role":"user","content":"x"}],"x":` + "\"\x01\"}": "the request body is not valid JSON",
	} {
		_, ae := fuzzDecoder.Decode([]byte("application/json"), []byte(body))
		if ae == nil {
			t.Errorf("%s: accepted", body)
			continue
		}
		if !strings.Contains(ae.Message, want) {
			t.Errorf("%s:\n got %q\nwant it to contain %q", body, ae.Message, want)
		}
	}
}

// FuzzDecodeFast is the differential check of the one-pass decoder against
// encoding/json, on any valid UTF-8 (Decode refuses the rest first).
//
//	go test -run '^$' -fuzz '^FuzzDecodeFast$' -fuzztime 10m ./pipeline/
func FuzzDecodeFast(f *testing.F) {
	for _, body := range fastDecodeCases {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !utf8.Valid(body) {
			return
		}
		in := bytes.Clone(body)
		checkFastDecode(t, body)
		if !bytes.Equal(in, body) {
			t.Fatal("decodeFast changed its input")
		}
	})
}

package pipeline

import (
	"encoding/json"
	"reflect"
	"testing"
	"unsafe"

	"github.com/llm-gateway/gateway/providers"
)

// A released request keeps nothing, and the next one decoded into its frame
// reads exactly what encoding/json reads.
func TestReleasedRequestFrameKeepsNothing(t *testing.T) {
	d := NewDecoder(2048)
	full := `{"model":"gpt-4","messages":[{"role":"system","content":"a"},{"role":"user","content":[{"type":"text","text":"b"}],"name":"n"},{"role":"assistant","content":null,"tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","content":"c","tool_call_id":"t"}],"temperature":0.5,"max_tokens":9,"stop":["x"],"user":"u"}`
	small := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
	for range 3 {
		req, ae := d.Decode([]byte("application/json"), []byte(full))
		if ae != nil {
			t.Fatal(ae.Message)
		}
		f := (*requestFrame)(unsafe.Pointer(req))
		if len(req.Messages) != 4 || &req.Messages[0] != &f.msgs[0] {
			t.Fatal("the messages are not in the frame's room")
		}
		d.release(req)
		if !reflect.DeepEqual(*f, requestFrame{}) {
			t.Fatalf("a released frame still holds its request: %#v", f.req)
		}
		req, ae = d.Decode([]byte("application/json"), []byte(small))
		if ae != nil {
			t.Fatal(ae.Message)
		}
		var want providers.ChatRequest
		if err := json.Unmarshal([]byte(small), &want); err != nil {
			t.Fatal(err)
		}
		got := *req
		got.Raw, got.RawAgrees = nil, false
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decoded after a release:\n got %#v\nwant %#v", got, want)
		}
		d.release(req)
	}
}

package providers

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// fastParseBodies are answers the fast path must read itself, and bodies it
// must leave to the reference (parseOpenAIGJSON), which then decides.
var (
	fastParseBodies = []string{
		`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"hi","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2},"system_fingerprint":"fp"}`,
		`{"choices":[]}`,
		" \n{ \"choices\" : [ ] } \t",
		`{"choices":[{"message":{"content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}`,
		`{"choices":[{"message":{"role":"assistant","content":"line\none \"quoted\" \u00e9 \ud83d\ude00 \ud800"},"finish_reason":null}]}`,
		`{"choices":[{"index":1,"message":{"content":"a"}},{"index":0,"message":{"content":"b","tool_calls":null}}],"usage":null}`,
		`{"choices":[{"logprobs":{"content":[{"token":"a","logprob":-0.1,"top_logprobs":[]}]},"message":{}}]}`,
		`{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0}},"service_tier":"default","extra":[1,2.5e3,true,false,null,{"x":"y"}]}`,
		`{"created":-0,"choices":[{"index":-0}]}`,
		`{"created":9223372036854775807,"choices":[]}`,
		`{"choices":[{"message":{"content":"caf` + "\u00e9" + ` ✓"}}]}`,
	}
	referenceParseBodies = []string{
		``, ` `, `null`, `[]`, `[{"choices":[]}]`, `{"choices":null}`, `{}`,
		`{"choices":[],"choices":[]}`,                             // a repeated key
		`{"choices":[{"message":{"content":"a","content":"b"}}]}`, // a repeated key inside
		`{"ch\u006fices":[]}`,                                     // an escaped key
		`{"object":"list","choices":[]}`,                          // not a completion
		`{"object":null,"choices":[]}`,
		`{"created":"123","choices":[]}`,                            // a number as a string
		`{"created":1.5,"choices":[]}`,                              // not an integer
		`{"created":1e3,"choices":[]}`,                              // an integer as a float
		`{"created":9223372036854775808,"choices":[]}`,              // too large for int64
		`{"model":7,"choices":[]}`,                                  // wrong type
		`{"choices":[1]}`,                                           // a choice that is not an object
		`{"choices":[{"message":"hi"}]}`,                            // a message that is not an object
		`{"choices":[{"message":{"content":7}}]}`,                   // content of the wrong type
		`{"choices":[{"message":{"tool_calls":{}}}]}`,               // tool_calls not an array
		`{"choices":[{"finish_reason":1}]}`,                         // finish_reason not a string
		`{"choices":[],"usage":[]}`,                                 // usage not an object
		`{"choices":[],"usage":{"total_tokens":"3"}}`,               // a token count as a string
		`{"choices":[]} x`,                                          // trailing bytes
		`{"choices":[],}`,                                           // a trailing comma
		`{"choices":[01]}`,                                          // a leading zero
		`{"choices":["` + "\x01" + `"]}`,                            // a control byte
		`{"choices":[{"message":{"content":"caf` + "\xe9" + `"}}]}`, // invalid UTF-8
		`{"choices":[],"x":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`,
	}
)

func TestParseOpenAIFastReadsTheUsualAnswers(t *testing.T) {
	for _, body := range fastParseBodies {
		if _, ok := parseOpenAIFast([]byte(body)); !ok {
			t.Errorf("the fast path refused %q", body)
		}
		checkParseOpenAIFast(t, []byte(body))
	}
}

func TestParseOpenAIFastLeavesTheRestToTheReference(t *testing.T) {
	for _, body := range referenceParseBodies {
		if _, ok := parseOpenAIFast([]byte(body)); ok {
			t.Errorf("the fast path accepted %q", body)
		}
		checkParseOpenAIFast(t, []byte(body))
	}
}

// checkParseOpenAIFast: when the fast path accepts body, the reference must
// accept it too and read the same answer.
func checkParseOpenAIFast(t *testing.T, body []byte) {
	t.Helper()
	in := bytes.Clone(body)
	got, ok := parseOpenAIFast(body)
	if !bytes.Equal(body, in) {
		t.Fatal("the fast path changed its input")
	}
	if !ok {
		return
	}
	want, err := parseOpenAIGJSON(bytes.Clone(body))
	if err != nil {
		t.Fatalf("the fast path accepted what the reference refuses (%v):\n%q", err, body)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the fast path and the reference differ on\n%q\nfast: %#v\nref:  %#v", body, got, want)
	}
	// The adapter's own path, into a frame from the pool (one used and
	// released before, as often as not), reads the same answer.
	pooled, err := parseOpenAIPooled(body)
	if err != nil || pooled.frame == nil {
		t.Fatalf("the pooled path refused what the fast path accepts (%v):\n%q", err, body)
	}
	p := *pooled
	p.frame = nil
	if !reflect.DeepEqual(&p, want) {
		t.Fatalf("the pooled path and the reference differ on\n%q\npooled: %#v\nref:    %#v", body, &p, want)
	}
	pooled.Release()
}

func TestReleasedAnswerFrameKeepsNothingButItsBuffer(t *testing.T) {
	for _, size := range []int{0, maxPooledBody + 1} {
		body := `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi","refusal":null},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3},"pad":"` + strings.Repeat("x", size) + `"}`
		cr, err := parseOpenAIPooled([]byte(body))
		if err != nil || cr.frame == nil {
			t.Fatalf("not parsed into a frame: %v", err)
		}
		f := cr.frame
		if cr.Usage != &f.usage || &cr.Choices[0] != &f.choices[0] || cr.Choices[0].Message.Content != &f.str[0] {
			t.Fatal("the answer's parts are not the frame's")
		}
		cr.Release()
		kept := f.body
		if size > 0 && kept != nil {
			t.Errorf("a frame kept a %d-byte buffer", cap(kept))
		}
		if size == 0 && (kept == nil || len(kept) != 0) {
			t.Errorf("a frame dropped its small buffer, or kept its bytes (len %d)", len(kept))
		}
		if !reflect.DeepEqual(*f, responseFrame{body: kept}) {
			t.Errorf("a released frame still holds its answer: %#v", *f)
		}
	}
	(&ChatResponse{}).Release() // an answer from no pool: nothing to do
}

// FuzzParseOpenAIFast is the differential check of the answer's fast path
// against the reference; FuzzParseOpenAIResponse checks what either returns.
func FuzzParseOpenAIFast(f *testing.F) {
	for _, s := range append(append([]string{}, fastParseBodies...), referenceParseBodies...) {
		f.Add([]byte(s))
	}
	f.Fuzz(checkParseOpenAIFast)
}

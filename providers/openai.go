package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	"github.com/valyala/fasthttp"
)

// openAIPath is the Chat Completions endpoint under the base URL.
const openAIPath = "/v1/chat/completions"

// OpenAI calls the OpenAI Chat Completions API (or anything that speaks it).
// The client's body is forwarded with only the model (and stream) changed,
// so fields the gateway does not know reach OpenAI unchanged. Safe for
// concurrent use.
type OpenAI struct {
	name string
	up   *upstream
}

// NewOpenAI builds the adapter for s; zero settings take their defaults.
func NewOpenAI(name string, s ProviderSettings) (*OpenAI, error) {
	up, err := newUpstream(name, s, openAIPath)
	if err != nil {
		return nil, err
	}
	up.setHeads(fasthttp.HeaderAuthorization, "Bearer "+s.APIKey)
	return &OpenAI{name: name, up: up}, nil
}

// Name is the provider's configured name.
func (p *OpenAI) Name() string { return p.name }

// Close closes the idle connections; calls in flight finish normally.
func (p *OpenAI) Close() error {
	p.up.close()
	return nil
}

func (p *OpenAI) request(req *ChatRequest, call Call, stream bool) (*fasthttp.Request, error) {
	body, err := openAIBody(req, call.Model, stream)
	if err != nil {
		return nil, p.up.fail(ClassInvalid, 0, "the request could not be encoded: "+err.Error(), err)
	}
	r := fasthttp.AcquireRequest()
	p.up.prepare(r, call, body, stream)
	return r, nil
}

// Complete makes one non-streamed call.
func (p *OpenAI) Complete(ctx context.Context, req *ChatRequest, call Call) (*ChatResponse, error) {
	r, err := p.request(req, call, false)
	if err != nil {
		return nil, err
	}
	defer fasthttp.ReleaseRequest(r)
	return p.up.complete(ctx, call, r, parseOpenAIPooled)
}

// Stream makes one streamed call; see Provider.
func (p *OpenAI) Stream(ctx context.Context, req *ChatRequest, call Call) (Stream, error) {
	r, err := p.request(req, call, true)
	if err != nil {
		return nil, err
	}
	defer fasthttp.ReleaseRequest(r)
	s, err := p.up.openStream(ctx, call, r, openAIStreamDecoder{})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// parseOpenAIPooled is parseOpenAIResponse of a copy of body, which the
// fasthttp response that holds it will reuse. The copy, the answer, its
// first choice and its usage are a responseFrame's, given back by
// ChatResponse.Release.
func parseOpenAIPooled(body []byte) (*ChatResponse, error) {
	f := responseFrames.Get().(*responseFrame)
	f.body = append(f.body[:0], body...)
	if cr, ok := parseOpenAIFastIn(f.body, f); ok {
		cr.frame = f
		return cr, nil
	}
	// The reference parser's answer shares f.body too: f is left to the
	// garbage collector with it.
	return parseOpenAIGJSON(f.body)
}

// openAIBody is the body sent upstream: the client's own bytes with only
// model and stream changed (and stream_options dropped from a non-streamed
// call, which OpenAI rejects), or the marshalled request when there are no
// raw bytes. req.Raw itself is never modified.
func openAIBody(req *ChatRequest, model string, stream bool) ([]byte, error) {
	if req.Raw == nil {
		c := *req
		c.Model, c.Stream = model, stream
		if !stream {
			c.StreamOptions = nil
		}
		return json.Marshal(&c)
	}
	if req.RawAgrees && req.Model == model && req.Stream == stream && (stream || req.StreamOptions == nil) {
		return req.Raw, nil // nothing to change
	}
	body := req.Raw
	// One pass over the top-level keys finds what three lookups would: the
	// first "model", the first "stream" and whether stream_options is there
	// (gjson's Get and sjson's Set also act on the first occurrence), and
	// how often each key occurs.
	var isStream, modelOK bool
	var nModel, nStream, nOptions int
	gjson.Parse(unsafe.String(unsafe.SliceData(body), len(body))).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "model":
			if nModel++; nModel == 1 {
				modelOK = v.Type == gjson.String && v.Str == model
			}
		case "stream":
			if nStream++; nStream == 1 {
				isStream = v.Type == gjson.True
			}
		case "stream_options":
			nOptions++
		}
		return true
	})
	var err error
	// A repeated key is ambiguous: the decoder kept the last one, a
	// provider may read either. Every occurrence goes, and one is set.
	if nModel > 1 {
		body, err = deleteAll(body, "model", nModel)
		modelOK = false
	}
	if err == nil && nStream > 1 {
		body, err = deleteAll(body, "stream", nStream)
		isStream = false
	}
	if err != nil {
		return nil, err
	}
	if !modelOK {
		if body, err = sjson.SetBytes(body, "model", model); err != nil {
			return nil, err
		}
	}
	switch {
	case stream && !isStream:
		body, err = sjson.SetBytes(body, "stream", true)
	case !stream && isStream:
		body, err = sjson.SetBytes(body, "stream", false)
	}
	if err != nil {
		return nil, err
	}
	if !stream && nOptions > 0 {
		if body, err = deleteAll(body, "stream_options", nOptions); err != nil {
			return nil, err
		}
	}
	return body, nil
}

// deleteAll removes the n occurrences of a top-level key (sjson deletes the
// first one each time). It never modifies body in place.
func deleteAll(body []byte, key string, n int) ([]byte, error) {
	var err error
	for range n {
		if body, err = sjson.DeleteBytes(body, key); err != nil {
			return nil, err
		}
	}
	return body, nil
}

// errNotACompletion is a 2xx body that is not a chat.completion.
var errNotACompletion = errors.New("not a chat.completion object with choices")

// errMalformedJSON is a 2xx body that is not JSON at all.
var errMalformedJSON = errors.New("the body is not valid JSON")

// parseOpenAIResponse reads a chat.completion, keeping body as its Raw. It
// validates the whole body but extracts only the fields of ChatResponse: the
// body itself goes to the client unchanged, so decoding all of it through
// reflection (as encoding/json would) is wasted. The one-pass fast path reads
// the usual answers; anything else goes to parseOpenAIGJSON, the reference.
func parseOpenAIResponse(body []byte) (*ChatResponse, error) {
	if cr, ok := parseOpenAIFast(body); ok {
		return cr, nil
	}
	return parseOpenAIGJSON(body)
}

// parseOpenAIGJSON is parseOpenAIResponse with gjson: it validates the body,
// then reads it in one ForEach per object. When a key repeats, the last one
// wins, as with encoding/json.
func parseOpenAIGJSON(body []byte) (*ChatResponse, error) {
	if !gjson.ValidBytes(body) {
		return nil, errMalformedJSON
	}
	body = validUTF8(body)
	// body is the caller's own copy and is never modified: the strings
	// read from it may share its memory instead of copying it again.
	root := gjson.Parse(unsafe.String(unsafe.SliceData(body), len(body)))
	if !root.IsObject() {
		return nil, errNotACompletion
	}
	out := &ChatResponse{Raw: body}
	ok, sawChoices := true, false
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "id":
			out.ID = v.Str
		case "object":
			out.Object = v.Str
			ok = v.Type == gjson.String && v.Str == "chat.completion"
		case "created":
			out.Created = v.Int()
		case "model":
			out.Model = v.Str
		case "system_fingerprint":
			out.SystemFingerprint = v.Str
		case "choices":
			sawChoices = v.IsArray()
			if sawChoices {
				out.Choices = out.Choices[:0]
				v.ForEach(func(_, c gjson.Result) bool {
					ok = c.IsObject()
					if ok {
						out.Choices = append(out.Choices, parseOpenAIChoice(c))
					}
					return ok
				})
			}
		case "usage":
			if v.IsObject() {
				u := &Usage{}
				v.ForEach(func(k, v gjson.Result) bool {
					switch k.Str {
					case "prompt_tokens":
						u.PromptTokens = int(v.Int())
					case "completion_tokens":
						u.CompletionTokens = int(v.Int())
					case "total_tokens":
						u.TotalTokens = int(v.Int())
					}
					return true
				})
				out.Usage = u
			}
		}
		return ok
	})
	if !ok || !sawChoices {
		return nil, errNotACompletion
	}
	if out.Choices == nil {
		out.Choices = []Choice{}
	}
	return out, nil
}

// parseOpenAIChoice reads one element of choices, in one pass over it and
// one over its message. When a key repeats, the last one wins, as with
// encoding/json.
func parseOpenAIChoice(c gjson.Result) Choice {
	var ch Choice
	c.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "index":
			ch.Index = int(v.Int())
		case "finish_reason":
			ch.FinishReason = ""
			if v.Type == gjson.String {
				ch.FinishReason = v.Str
			}
		case "logprobs":
			ch.Logprobs = json.RawMessage(v.Raw)
		case "message":
			ch.Message = AnswerMessage{}
			v.ForEach(func(k, v gjson.Result) bool {
				switch k.Str {
				case "role":
					ch.Message.Role = v.Str
				case "content":
					ch.Message.Content = nil
					if v.Type == gjson.String {
						text := v.Str
						ch.Message.Content = &text
					}
				case "refusal":
					ch.Message.Refusal = nil
					if v.Type == gjson.String {
						refusal := v.Str
						ch.Message.Refusal = &refusal
					}
				case "tool_calls":
					ch.Message.ToolCalls = nil
					if v.IsArray() {
						ch.Message.ToolCalls = json.RawMessage(v.Raw)
					}
				}
				return true
			})
		}
		return true
	})
	return ch
}

// openAIStreamDecoder reads OpenAI's data-only stream: each payload is a
// chunk (kept as Raw), [DONE] is the end, and a payload with a top-level
// error is an error event.
type openAIStreamDecoder struct{}

var doneMarker = []byte("[DONE]")

func (openAIStreamDecoder) decode(ev sseEvent) (*Chunk, error) {
	data := bytes.TrimSpace(ev.data)
	if bytes.Equal(data, doneMarker) {
		return nil, io.EOF
	}
	data = validUTF8(data)
	var payload struct {
		Chunk
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(data, &payload); err != nil {
		return nil, err
	}
	if len(payload.Error) > 0 && !bytes.Equal(payload.Error, []byte("null")) {
		d, ok := parseErrorDetail(data)
		if !ok {
			return nil, fmt.Errorf("an error payload that does not parse")
		}
		return nil, &streamEventError{detail: d}
	}
	c := payload.Chunk
	c.Raw = append([]byte(nil), data...)
	return &c, nil
}

var (
	_ Provider     = (*OpenAI)(nil)
	_ eventDecoder = openAIStreamDecoder{}
)

// validUTF8 returns b with every invalid UTF-8 sequence replaced by U+FFFD.
// JSON must be UTF-8 (RFC 8259) and an OpenAI body is forwarded to the client
// as it came, so a provider's stray bytes are mended here, where they enter;
// a valid body (the rule) is returned as is, without a copy.
func validUTF8(b []byte) []byte {
	if utf8.Valid(b) {
		return b
	}
	return bytes.ToValidUTF8(b, []byte("\uFFFD"))
}

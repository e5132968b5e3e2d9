package providers

import (
	"encoding/json"
	"sync"
)

// ChatResponse is the canonical answer: an OpenAI chat.completion object.
type ChatResponse struct {
	ID                string   `json:"id"`
	Object            string   `json:"object"`
	Created           int64    `json:"created"`
	Model             string   `json:"model"`
	Choices           []Choice `json:"choices"`
	Usage             *Usage   `json:"usage,omitempty"`
	SystemFingerprint string   `json:"system_fingerprint,omitempty"`

	// Raw is the provider's body when it already was an OpenAI
	// chat.completion (the OpenAI adapter), so fields this struct does not
	// know reach the client unchanged. Nil for translated answers.
	Raw []byte `json:"-"`

	frame *responseFrame // the memory it is made of, if pooled
}

// responseFrame is the memory of an answer of the OpenAI adapter: its copy
// of the body, which Raw and its strings share, and room for its first
// choice, its usage and its content. A pooled frame is used again once its
// answer is released: that saves five allocations and about 600 bytes per
// call, and the memory it reuses is still in the cache, where a fresh
// allocation is not.
type responseFrame struct {
	resp    ChatResponse
	choices [1]Choice
	usage   Usage
	str     [2]string // the strings behind the first choice's content and refusal
	strs    int       // how many of str are taken
	body    []byte
}

// maxPooledBody is the largest body buffer a released frame keeps.
const maxPooledBody = 64 << 10

var responseFrames = sync.Pool{New: func() any { return new(responseFrame) }}

// Release gives the answer's memory back for another call to use, once
// nothing reads the answer any more: not its fields, not Raw, not a string
// or slice taken from it. An answer that was not made from a pool is left
// to the garbage collector, as is one never released.
func (r *ChatResponse) Release() {
	f := r.frame
	if f == nil {
		return
	}
	body := f.body[:0]
	if cap(body) > maxPooledBody {
		body = nil
	}
	*f = responseFrame{body: body}
	responseFrames.Put(f)
}

// Choice is one choice of an answer.
type Choice struct {
	Index        int             `json:"index"`
	Message      AnswerMessage   `json:"message"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

// AnswerMessage is the assistant's message in a choice.
type AnswerMessage struct {
	Role      string          `json:"role"`
	Content   *string         `json:"content"`
	Refusal   *string         `json:"refusal"`
	ToolCalls json.RawMessage `json:"tool_calls,omitempty"`
}

// Usage is token accounting in OpenAI's names.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// Text returns the first choice's text, or "".
func (r *ChatResponse) Text() string {
	if len(r.Choices) == 0 || r.Choices[0].Message.Content == nil {
		return ""
	}
	return *r.Choices[0].Message.Content
}

// Chunk is one OpenAI chat.completion.chunk of a stream.
type Chunk struct {
	ID                string        `json:"id"`
	Object            string        `json:"object"`
	Created           int64         `json:"created"`
	Model             string        `json:"model"`
	SystemFingerprint string        `json:"system_fingerprint,omitempty"`
	Choices           []ChunkChoice `json:"choices"`
	Usage             *Usage        `json:"usage"`

	// Raw is the provider's data payload when it already was an OpenAI chunk;
	// the pipeline forwards it as is. Nil for translated chunks.
	Raw []byte `json:"-"`
}

// ChunkChoice is one choice of a chunk.
type ChunkChoice struct {
	Index        int             `json:"index"`
	Delta        Delta           `json:"delta"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
}

// Delta is the increment a chunk carries.
type Delta struct {
	Role      string          `json:"role,omitempty"`
	Content   *string         `json:"content,omitempty"`
	Refusal   *string         `json:"refusal,omitempty"`
	ToolCalls json.RawMessage `json:"tool_calls,omitempty"`
}

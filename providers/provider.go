package providers

import (
	"context"
	"time"
)

// Provider calls one upstream API. Implementations are safe for concurrent
// use. Every error they return is a *Error with its class.
type Provider interface {
	// Name is the provider's configured name ("openai", "anthropic").
	Name() string
	// Complete makes one non-streamed call for target.Model.
	Complete(ctx context.Context, req *ChatRequest, call Call) (*ChatResponse, error)
	// Stream makes one streamed call. It returns once the upstream has
	// answered with a success status and its stream has begun; a failure
	// before that is returned as the error, so the caller may still retry or
	// fail over. Chunks then come from the Stream.
	Stream(ctx context.Context, req *ChatRequest, call Call) (Stream, error)
}

// Call is what one attempt needs besides the request.
type Call struct {
	Model     string        // the target's model name at this provider
	RequestID string        // sent upstream as X-Request-ID
	Timeout   time.Duration // bounds this attempt (for a stream: until its first chunk); 0 = no limit but ctx
}

// Stream is an upstream stream translated into OpenAI chunks.
type Stream interface {
	// Next returns the next chunk, io.EOF after a clean end of the stream, or
	// a *Error for a failure mid-stream (a cut connection, an error event, a
	// stall longer than idle). It must not be called after an error.
	Next(ctx context.Context, idle time.Duration) (*Chunk, error)
	// Close releases the connection; it is safe to call more than once.
	Close() error
}

// Checker is implemented by providers that cannot serve every valid request:
// the Anthropic adapter translates from OpenAI's shape, and some parameters
// (n > 1, logprobs, response_format json_schema, …) have no equivalent there.
// Check answers without a call; a refusal is a *Error of ClassInvalid naming
// the parameter. The engine passes over a target that refuses, as it does one
// whose breaker is open, so a failover never spends an attempt on it.
type Checker interface {
	Check(req *ChatRequest) error
}

// Prefiller is implemented by providers that continue a conversation's final
// assistant message instead of answering it anew (Anthropic's prefill). The
// pipeline's stream continuation resumes a cut stream only on such a target.
type Prefiller interface {
	SupportsPrefill() bool
}

package pipeline

import (
	"context"
	"errors"
	"io"
	"strings"
	"unicode"

	"github.com/llm-gateway/gateway/fsm"
	"github.com/llm-gateway/gateway/providers"
)

// Stream continuation (policy.stream_continuation, off by default): when a
// stream fails after its first byte, the engine fails over to the next target
// that continues a prefill (Anthropic), sending the text streamed so far as a
// final assistant message, and forwards the continuation as if nothing had
// happened. The journal marks the join with an action=joined line.
//
// Its limits: the continuation is a new generation, so it is seamless only as
// far as the model continues its own text; only text can be continued (a
// stream cut inside a tool call is not resumed); usage counts only what each
// segment reports; and an OpenAI target cannot continue a prefill, so it is
// never chosen to resume.

// resume tries to continue a stream cut by err on the next prefill-capable
// target. It reports whether a continuation has begun; when it has, h serves
// the new stream and skip is the whitespace the client already received that
// was trimmed from the prefill (the continuation repeats it).
func (h *StreamHandle) resume(ctx context.Context, err error, sofar string) (skip string, ok bool) {
	r := h.r
	cut := r.targets[r.lastIdx]
	r.permit.Done(err)
	_ = r.stream.Close()
	r.lastErr = err
	r.e.journal.Failed(r.m.ID(), r.attempts, cut.Provider, err, r.e.clock.Now().Sub(r.lastStart))

	prefill := strings.TrimRightFunc(sofar, unicode.IsSpace)
	skip = sofar[len(prefill):]
	if prefill == "" {
		return "", false
	}
	req := *r.req
	req.Raw, req.RawAgrees = nil, false // the adapter encodes the changed request
	req.Messages = append(append([]providers.Message(nil), r.req.Messages...),
		providers.Message{Role: "assistant", Content: providers.Content{Kind: providers.ContentString, Text: prefill}})

	failedOver := false
	for idx := r.lastIdx + 1; idx < len(r.targets); idx++ {
		t := r.targets[idx]
		if p, ok := r.e.providers[t.Provider].(providers.Prefiller); !ok || !p.SupportsPrefill() {
			continue
		}
		permit, aerr := r.e.breakers[t.Provider].Admit()
		if aerr != nil {
			var oe *providers.OpenError
			if errors.As(aerr, &oe) {
				r.e.journal.Skipped(r.m.ID(), t.Provider, oe.State, oe.ProbeAt.Sub(r.e.clock.Now()))
			}
			continue
		}
		if !failedOver {
			r.fire(fsm.EventFailover, fsm.Detail{Provider: t.Provider, ErrorClass: string(providers.ClassOf(err)), Reason: "stream_continuation"})
			failedOver = true
		}
		r.attempts++
		r.tried[idx]++
		r.lastIdx, r.lastStart = idx, r.e.clock.Now()
		r.fire(fsm.EventAttempt, fsm.Detail{Attempt: r.attempts, Provider: t.Provider, Model: t.Model, Reason: "stream_continuation"})
		timeout := r.firstTokenTimeout(r.lastStart)
		st, serr := r.e.providers[t.Provider].Stream(ctx, &req, providers.Call{Model: t.Model, RequestID: r.m.ID(), Timeout: timeout})
		var first *providers.Chunk
		if serr == nil {
			first, serr = st.Next(ctx, r.e.policy.StreamIdleTimeout)
			if serr == io.EOF { // the clean end itself; see segment
				serr = &providers.Error{Class: providers.ClassMalformed, Provider: t.Provider, Message: "the stream ended before its first chunk"}
			}
			if serr != nil {
				_ = st.Close()
			}
		}
		if serr != nil {
			permit.Done(r.breakerOutcome(serr, timeout, r.e.policy.FirstTokenTimeout))
			r.lastErr = serr
			r.e.journal.Failed(r.m.ID(), r.attempts, t.Provider, serr, r.e.clock.Now().Sub(r.lastStart))
			if ctx.Err() != nil {
				return "", false
			}
			continue
		}
		r.stream, r.first, r.permit = st, first, permit
		r.e.journal.Joined(r.m.ID(), r.attempts, cut.Provider, t.Provider, len(prefill))
		return skip, true
	}
	return "", false
}

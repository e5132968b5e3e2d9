package pipeline

import (
	"bufio"
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llm-gateway/gateway/fsm"
)

// fasthttp does not recover panics (DESIGN §8): one would take the whole
// process down, every request in flight with it. The handlers defer a
// recover that calls panicked.
//
// The handler's goroutine runs decoding, the engine (every provider call of
// a plain request, and a stream's opening up to its first chunk) and the
// answer. A stream that has begun runs on two goroutines of its own after the
// handler returned, its writer and its upstream reader; the writer recovers
// both (streamPanicked), since a stream's status line is already sent.

// panicked answers a recovered panic with a 500 in the OpenAI error shape,
// logs it at ERROR with the request ID and a short stack, and ends the
// request machine m (when there is one) so that replay sees the request end:
// give_up with status 500, or reject if it panicked before validation.
func (s *Server) panicked(ctx *fasthttp.RequestCtx, id string, m *fsm.Machine, v any, start time.Time) {
	s.metrics.panicked()
	if id == "" {
		id = requestID(ctx)
	}
	s.journal.Message(levelError, "panic", "request_id", id, "path", truncate(string(ctx.Path()), 100),
		"panic", truncate(fmt.Sprint(v), 300), "stack", panicStack(8))
	if m != nil {
		endAfterPanic(m)
	}
	var latency time.Duration
	if !start.IsZero() {
		latency = s.clock.Now().Sub(start)
	}
	// Drop whatever the handler had set (headers, a body, a stream).
	ctx.Response.Reset()
	writeError(ctx, id, &apiError{Status: 500, Type: typeServer, Code: "internal_error",
		Message: "the gateway failed while serving this request; the failure is logged with its request ID"}, 0, latency)
}

// recovered is a panic caught on one of a stream's goroutines, with the
// stack of where it happened, on its way to the writer's recover.
type recovered struct {
	value any
	stack string
}

// caught wraps a recovered value, once: a panic passed on keeps the stack of
// where it began. Call it from the deferred function that recovered.
func caught(v any) *recovered {
	if p, ok := v.(*recovered); ok {
		return p
	}
	return &recovered{value: v, stack: panicStack(8)}
}

// streamPanicked ends a stream whose writer or reader panicked. The client
// already has a 200 and perhaps some chunks, so it gets an OpenAI error event
// (which the SDKs raise) and the body ends, without [DONE]. Unless the stream
// had already ended (ended), the machine gives up with status 500 and reason
// panic, and the upstream stream and breaker permit are let go as for a
// client that left: a panic of the gateway is not the provider's failure.
func (s *Server) streamPanicked(w *bufio.Writer, id string, h *StreamHandle, p *recovered, ended bool, start time.Time) {
	s.metrics.panicked()
	s.journal.Message(levelError, "panic", "request_id", id, "path", "/v1/chat/completions", "stream", "true",
		"panic", truncate(fmt.Sprint(p.value), 300), "stack", p.stack)
	safely(func() {
		cw := chunkWriter{w: w, id: id}
		_ = cw.failEvent("the gateway failed while streaming this answer; the failure is logged with its request ID", "internal_error")
	})
	if ended {
		return
	}
	r := h.r
	safely(func() { _ = r.stream.Close() })
	safely(r.permit.Release)
	endAfterPanic(r.m)
	safely(func() {
		s.metrics.requestEnded(false, true, s.clock.Now().Sub(start))
		r.m.Release()
		s.metrics.streamEnded()
	})
}

// safely runs f, dropping a panic: the cleanup of a panic must not panic out.
func safely(f func()) {
	defer func() { _ = recover() }()
	f()
}

// endAfterPanic fires the terminal event of a machine that a panic left
// unfinished. The hook it calls may itself be what panicked; a second panic
// is dropped here rather than let out of the recovery.
func endAfterPanic(m *fsm.Machine) {
	defer func() { _ = recover() }()
	ev := fsm.EventGiveUp
	switch {
	case m.Done():
		return
	case m.State() == fsm.Received:
		ev = fsm.EventReject
	}
	_, _ = m.Fire(context.Background(), ev, fsm.Detail{Status: 500, Reason: "panic"})
}

// panicStack returns up to max frames of the panicking goroutine, from the
// frame that panicked outwards, on one line: "pkg.Func (file.go:12) < …".
// It must be called from the deferred function that recovered.
func panicStack(max int) string {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	var out []string
	inPanic := false
	for {
		f, more := frames.Next()
		switch {
		case !inPanic:
			inPanic = f.Function == "runtime.gopanic"
		case len(out) == 0 && strings.HasPrefix(f.Function, "runtime."):
			// runtime.panicmem, sigpanic and the like: not the culprit.
		default:
			fn := f.Function
			if i := strings.LastIndexByte(fn, '/'); i >= 0 {
				fn = fn[i+1:]
			}
			out = append(out, fmt.Sprintf("%s (%s:%d)", fn, filepath.Base(f.File), f.Line))
		}
		if !more || len(out) == max {
			break
		}
	}
	return strings.Join(out, " < ")
}

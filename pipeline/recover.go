package pipeline

import (
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
// What is covered: the handler's goroutine, which runs decoding, the engine
// (every provider call of a plain request, and a stream's opening up to its
// first chunk) and the answer. What is not: the goroutines a stream runs on
// after its handler returned (its writer and its upstream reader); a panic
// there still ends the process.

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

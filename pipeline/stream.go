package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llm-gateway/gateway/fsm"
	"github.com/llm-gateway/gateway/providers"
	"github.com/llm-gateway/gateway/providers/jsonenc"
)

// Streams: retry, backoff, failover and breakers work as for plain calls
// until the first chunk has arrived (the engine waits for it before it
// commits); from then on the client has bytes and the answer cannot change
// target, so a failure ends the client's stream with an OpenAI error payload
// (never a clean end without [DONE]), is logged as give_up and is counted by
// the breaker.

// firstTokenTimeout bounds a streamed attempt until its first chunk.
func (r *run) firstTokenTimeout(now time.Time) time.Duration {
	return attemptTimeout(now, r.e.policy.FirstTokenTimeout, r.deadline)
}

// openStream starts a streamed call and waits for its first chunk. On
// success the stream and the breaker permit are kept for the StreamHandle.
func (r *run) openStream(t providers.Target, permit *providers.Permit, timeout time.Duration) (err error) {
	held := false
	defer func() {
		if !held {
			permit.Release()
		}
	}()
	st, err := r.e.providers[t.Provider].Stream(r.ctx, r.req, providers.Call{Model: t.Model, RequestID: r.m.ID(), Timeout: timeout})
	var first *providers.Chunk
	if err == nil {
		first, err = st.Next(r.ctx, r.e.policy.StreamIdleTimeout)
		if err == io.EOF { // the clean end itself; see segment
			err = &providers.Error{Class: providers.ClassMalformed, Provider: t.Provider, Message: "the stream ended before its first chunk"}
		}
		if err != nil {
			_ = st.Close()
		}
	}
	if err != nil {
		permit.Done(r.breakerOutcome(err, timeout, r.e.policy.FirstTokenTimeout))
		return err
	}
	held = true
	r.stream, r.first, r.permit = st, first, permit
	return nil
}

// StreamHandle is a stream that has begun: the engine has committed to its
// target. The caller forwards its chunks and must call Finish exactly once.
type StreamHandle struct {
	r *run
	// failureLogged says resume already logged the failure that ends it.
	failureLogged bool
}

// First returns the chunk that committed the stream.
func (h *StreamHandle) First() *providers.Chunk { return h.r.first }

// Next returns the next upstream chunk, io.EOF at a clean end.
func (h *StreamHandle) Next(ctx context.Context) (*providers.Chunk, error) {
	return h.r.stream.Next(ctx, h.r.e.policy.StreamIdleTimeout)
}

// Finish ends the request machine: succeed after a clean end (err nil),
// give_up otherwise; it reports the outcome to the breaker and releases the
// upstream connection. gone says the client left (a neutral outcome for the
// breaker).
func (h *StreamHandle) Finish(err error, gone bool, latency time.Duration) {
	r := h.r
	_ = r.stream.Close()
	t := r.targets[r.lastIdx]
	switch {
	case gone:
		r.permit.Done(providers.ClassCanceled)
		r.fire(fsm.EventGiveUp, fsm.Detail{Attempt: r.attempts, Provider: t.Provider, Status: statusClientGone, Reason: "client_gone", Latency: latency})
	case err == nil:
		r.permit.Done(nil)
		r.fire(fsm.EventSucceed, fsm.Detail{Attempt: r.attempts, Provider: t.Provider, Status: 200, Latency: latency})
	case errors.Is(err, errShutdown):
		r.permit.Done(providers.ClassCanceled) // the gateway's doing, not the provider's
		r.fire(fsm.EventGiveUp, fsm.Detail{Attempt: r.attempts, Provider: t.Provider, Status: 503, Reason: "shutdown", Latency: latency})
	default:
		r.permit.Done(err)
		r.lastErr = err
		if !h.failureLogged {
			r.e.journal.Failed(r.m.ID(), r.attempts, t.Provider, err, latency)
		}
		r.fire(fsm.EventGiveUp, fsm.Detail{Attempt: r.attempts, Provider: t.Provider, Status: 502,
			ErrorClass: string(providers.ClassOf(err)), Reason: "stream_failed", Latency: latency})
	}
}

// writeStream answers a committed stream as OpenAI server-sent events. The
// body is written by fasthttp after the handler returns, so nothing of ctx is
// used inside the writer; conn stays valid until the writer is done.
func (s *Server) writeStream(ctx *fasthttp.RequestCtx, id string, res Result, req *providers.ChatRequest, rctx *callCtx, start time.Time) {
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("text/event-stream; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	ctx.Response.Header.Set("X-Request-ID", id)
	ctx.Response.Header.Set("X-Gateway-Provider", res.Provider)
	ctx.Response.Header.Set("X-Gateway-Attempts", strconv.Itoa(res.Attempts))
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	conn := ctx.Conn()
	heartbeat := s.settings.Server.Heartbeat
	s.metrics.streamBegan()
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		// This runs on a goroutine of its own, outside the handler's
		// recover: a panic here or on the stream's reader ends this
		// request, not the process.
		ended := false
		defer func() {
			if v := recover(); v != nil {
				s.streamPanicked(w, id, res.Stream, caught(v), ended, start)
			}
		}()
		sctx := newCallCtx()
		stop := sctx.cancel
		defer rctx.cancel()
		defer stop()
		defer sctx.watchClient(conn, &s.watches).stop()
		live := s.streams.add(sctx)
		defer s.streams.remove(live)
		if conn != nil {
			// A long stream must not be cut by a write deadline (DESIGN §8).
			_ = conn.SetWriteDeadline(time.Time{})
		}
		err, gone := pump(sctx, stop, w, res.Stream, includeUsage, s.settings.Policy.StreamContinuation, heartbeat)
		if live.aborted.Load() {
			// Shutdown cut it (its drain ran out), not the client.
			err, gone = errShutdown, false
			_ = (&chunkWriter{w: w, id: id}).failEvent("the gateway is shutting down and cut this stream before it ended; retry the request", "gateway_shutting_down")
		}
		ended = true
		res.Stream.Finish(err, gone, s.clock.Now().Sub(start))
		s.metrics.requestEnded(res.Stream.r.m.State() == fsm.Succeeded, true, s.clock.Now().Sub(start))
		res.Stream.r.m.Release()
		s.metrics.streamEnded()
	})
}

// chunkOrErr is what the reader hands the writer: a chunk, the error that
// ended the stream (io.EOF at a clean end), or a panic of the reader.
type chunkOrErr struct {
	c     *providers.Chunk
	err   error
	panic *recovered
}

// pump forwards chunks until the upstream ends or fails, or the client
// leaves. It returns the upstream's failure (nil for a clean end) and whether
// the client went away. With continuation on, a failure after the first byte
// is first offered to resume (continue.go).
func pump(ctx context.Context, stop context.CancelFunc, w *bufio.Writer, h *StreamHandle, includeUsage, continuation bool, heartbeat time.Duration) (error, bool) {
	first := h.First()
	fwd := &chunkWriter{w: w, id: h.r.m.ID(), includeUsage: includeUsage, first: first, keepText: continuation}
	if err := fwd.write(first); err != nil {
		stop()
		return nil, true
	}
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		err, gone := segment(ctx, stop, fwd, h, tick.C)
		if gone || err == nil {
			return err, gone
		}
		if continuation {
			if skip, ok := h.resume(ctx, err, fwd.text.String()); ok {
				fwd.join(skip)
				if fwd.write(h.First()) != nil {
					stop()
					return nil, true
				}
				continue
			}
			h.failureLogged = true
		}
		_ = fwd.errorEvent(err)
		return err, false
	}
}

// segment forwards the chunks of the current upstream stream. One reader
// goroutine turns the blocking Next into a channel, so the writer can send
// heartbeats while the upstream is quiet; segment always waits for it to end.
//
// A panic of the reader is handed to the writer, which panics with it; a
// panic of the writer stops the reader and waits for it. Either way it
// reaches the writer's recover (streamPanicked) with the reader gone.
func segment(ctx context.Context, stop context.CancelFunc, fwd *chunkWriter, h *StreamHandle, tick <-chan time.Time) (error, bool) {
	ch := make(chan chunkOrErr, 8)
	go func() {
		defer close(ch)
		defer func() {
			if v := recover(); v != nil {
				ch <- chunkOrErr{panic: caught(v)}
			}
		}()
		for {
			c, err := h.Next(ctx)
			ch <- chunkOrErr{c: c, err: err}
			if err != nil {
				return
			}
		}
	}()
	// clientLeft stops the upstream read and waits for the reader.
	clientLeft := func() (error, bool) {
		stop()
		for range ch {
		}
		return nil, true
	}
	defer func() {
		if v := recover(); v != nil {
			p := caught(v)
			clientLeft()
			panic(p)
		}
	}()
	// A ping is for a quiet stream: a tick after a chunk went out only
	// clears sent, so a ping follows one to two heartbeats of silence.
	sent := false
	for {
		select {
		case item := <-ch:
			switch {
			case item.panic != nil:
				panic(item.panic)
			case item.err == io.EOF:
				// io.EOF itself is the upstream's own end ([DONE],
				// message_stop). A *providers.Error that wraps an io.EOF is
				// a body that ended before it, cleanly framed or not: a
				// truncated answer, never to be passed off as complete.
				if fwd.includeUsage && fwd.usage != nil {
					if fwd.usageChunk() != nil {
						return nil, false // the answer was complete; the client left during [DONE]
					}
				}
				_ = fwd.done()
				return nil, false
			case item.err != nil:
				if ctx.Err() != nil {
					return nil, true
				}
				return item.err, false
			}
			if err := fwd.write(item.c); err != nil {
				return clientLeft()
			}
			sent = true
		case <-tick:
			if sent {
				sent = false
				continue
			}
			if err := fwd.ping(); err != nil {
				return clientLeft()
			}
		case <-ctx.Done():
			return clientLeft()
		}
	}
}

// chunkWriter writes OpenAI SSE events.
type chunkWriter struct {
	w            *bufio.Writer
	id           string // the request's, for failEvent
	includeUsage bool
	first        *providers.Chunk // the stream's first chunk: its id, created and model
	usage        *providers.Usage // a translated stream's usage, held back for the last chunk

	// Continuation: the text sent so far, and after a join, the whitespace
	// the client already has and the continuation will repeat.
	keepText bool
	text     strings.Builder
	joined   bool
	skip     string
}

// event writes one SSE event. Data with line breaks (an upstream event sent
// as several data lines, which SSE joins with "\n") goes out as one data
// line per line, so the client joins it back the same way.
func (cw *chunkWriter) event(data []byte) error {
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		_, _ = cw.w.WriteString("data: ")
		_, _ = cw.w.Write(data[:i])
		_ = cw.w.WriteByte('\n')
		data = data[i+1:]
	}
	_, _ = cw.w.WriteString("data: ")
	_, _ = cw.w.Write(data)
	_, _ = cw.w.WriteString("\n\n")
	return cw.w.Flush()
}

// join switches to a continuation stream: its chunks are presented as the
// original stream's (same id, created and model), its opening role chunk is
// dropped, and its text starts after what the client already has.
func (cw *chunkWriter) join(skip string) {
	cw.joined = true
	cw.skip = skip
}

// write forwards one chunk. An OpenAI upstream's chunk goes out as it came;
// a translated one is encoded, with its usage held back for the final usage
// chunk (OpenAI's include_usage shape) or dropped when not asked for.
func (cw *chunkWriter) write(c *providers.Chunk) error {
	if cw.keepText {
		for _, ch := range c.Choices {
			if ch.Index == 0 && ch.Delta.Content != nil {
				cw.text.WriteString(*ch.Delta.Content)
			}
		}
	}
	if cw.joined {
		c = cw.continued(c)
		if c == nil {
			return nil
		}
	}
	if c.Raw != nil {
		return cw.event(c.Raw)
	}
	if c.Usage != nil {
		cw.usage = c.Usage
		out := *c
		out.Usage = nil
		c = &out
		if len(c.Choices) == 0 {
			return nil
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return cw.event(b)
}

// continued rewrites a continuation chunk to read as part of the original
// stream, or returns nil for one that adds nothing.
func (cw *chunkWriter) continued(c *providers.Chunk) *providers.Chunk {
	out := *c
	out.Raw = nil
	out.ID, out.Created, out.Model = cw.first.ID, cw.first.Created, cw.first.Model
	out.Choices = nil
	for _, ch := range c.Choices {
		d := ch.Delta
		d.Role = ""
		if d.Content != nil && cw.skip != "" {
			trimmed := strings.TrimPrefix(*d.Content, cw.skip)
			d.Content = &trimmed
			cw.skip = ""
		}
		if d.Content != nil && *d.Content == "" && len(d.ToolCalls) == 0 && ch.FinishReason == nil {
			continue
		}
		ch.Delta = d
		out.Choices = append(out.Choices, ch)
	}
	if len(out.Choices) == 0 && out.Usage == nil {
		return nil
	}
	return &out
}

func (cw *chunkWriter) usageChunk() error {
	c := providers.Chunk{ID: cw.first.ID, Object: "chat.completion.chunk", Created: cw.first.Created, Model: cw.first.Model, Choices: []providers.ChunkChoice{}, Usage: cw.usage}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return cw.event(b)
}

func (cw *chunkWriter) done() error { return cw.event([]byte("[DONE]")) }

func (cw *chunkWriter) ping() error {
	_, _ = cw.w.WriteString(": ping\n\n")
	return cw.w.Flush()
}

// errorEvent ends a stream that failed after its first byte with an OpenAI
// error payload, which the SDKs raise as an error.
func (cw *chunkWriter) errorEvent(err error) error {
	msg := "the upstream stream failed: " + string(providers.ClassOf(err))
	var pe *providers.Error
	if errors.As(err, &pe) && pe.Message != "" {
		msg += ": " + pe.Message
	}
	return cw.failEvent(msg, "upstream_"+string(providers.ClassOf(err)))
}

// failEvent ends a stream with an OpenAI error payload (a server_error with
// code, and the request ID), which the SDKs raise as an error: the one shape
// of every stream that ends without [DONE].
func (cw *chunkWriter) failEvent(msg, code string) error {
	out := []byte(`{"error":{"message":`)
	out = jsonenc.AppendString(out, msg)
	out = append(out, `,"type":"server_error","param":null,"code":`...)
	out = jsonenc.AppendString(out, code)
	out = append(out, `},"request_id":`...)
	out = jsonenc.AppendString(out, cw.id)
	out = append(out, '}')
	return cw.event(out)
}

// errShutdown ends a stream that Shutdown cut when its drain ran out.
var errShutdown = errors.New("the gateway shut down before the stream ended")

// streamAbortWait bounds how long Shutdown waits for the streams it cut to
// write their error event and log their end.
const streamAbortWait = 2 * time.Second

// liveStreams are the streams flowing to clients.
type liveStreams struct {
	mu  sync.Mutex
	set map[*liveStream]struct{}
}

// liveStream is one of them: its context, and whether Shutdown cut it.
type liveStream struct {
	ctx     *callCtx
	aborted atomic.Bool
}

func (l *liveStreams) add(ctx *callCtx) *liveStream {
	ls := &liveStream{ctx: ctx}
	l.mu.Lock()
	if l.set == nil {
		l.set = map[*liveStream]struct{}{}
	}
	l.set[ls] = struct{}{}
	l.mu.Unlock()
	return ls
}

func (l *liveStreams) remove(ls *liveStream) {
	l.mu.Lock()
	delete(l.set, ls)
	l.mu.Unlock()
}

// abort cuts every stream and waits up to wait for them to end.
func (l *liveStreams) abort(wait time.Duration) {
	l.mu.Lock()
	n := len(l.set)
	for ls := range l.set {
		ls.aborted.Store(true)
		ls.ctx.cancel()
	}
	l.mu.Unlock()
	if n == 0 {
		return
	}
	for end := time.Now().Add(wait); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		l.mu.Lock()
		n = len(l.set)
		l.mu.Unlock()
		if n == 0 {
			// A writer that returned has left its last bytes in
			// fasthttp's pipe; its connection copies them out within
			// microseconds, before a process that exits next.
			time.Sleep(50 * time.Millisecond)
			return
		}
	}
}

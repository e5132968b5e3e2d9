package mock

import (
	"bufio"

	"github.com/valyala/fasthttp"
)

// events is a rendered SSE stream: one buffer, cut into events at ends.
// Rendering the whole stream before the first byte goes out lets the stream
// writer (which runs on its own goroutine, after the handler returned) work
// on data it owns, and lets stream_cut send exactly half of it.
type events struct {
	b    []byte
	ends []int
}

// mark ends the event being written.
func (e *events) mark() { e.ends = append(e.ends, len(e.b)) }

func (e *events) at(i int) []byte {
	start := 0
	if i > 0 {
		start = e.ends[i-1]
	}
	return e.b[start:e.ends[i]]
}

func (e *events) len() int { return len(e.ends) }

// setStreamHeaders sets what every stream answer carries besides the
// provider's own headers.
func setStreamHeaders(ctx *fasthttp.RequestCtx) {
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
}

// sendStream sends a streamed answer under fault: FaultMalformed breaks its
// first event, FaultStreamCut and FaultStreamStall cut it after its first
// events, FaultStreamTruncate ends it cleanly there; any other fault (none)
// sends it whole.
func (s *Server) sendStream(ctx *fasthttp.RequestCtx, ev *events, fault string) {
	switch fault {
	case FaultMalformed:
		stream(ctx, ev.broken())
	case FaultStreamTruncate:
		stream(ctx, ev.head(max(ev.len()/2, 1)))
	case FaultStreamCut, FaultStreamStall:
		s.cutStream(ctx, ev, fault == FaultStreamStall)
	default:
		stream(ctx, ev)
	}
}

// sendBody sends a 200 JSON answer rendered by render; FaultMalformed cuts
// it in half.
func sendBody(ctx *fasthttp.RequestCtx, render func([]byte) []byte, fault string) {
	buf := getBuf()
	defer putBuf(buf)
	*buf = render(*buf)
	body := *buf
	if fault == FaultMalformed {
		body = body[:len(body)/2]
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

// stream sends the events, flushing after each one so that the client sees
// them as they come. A failed flush means the client left: stop there.
func stream(ctx *fasthttp.RequestCtx, ev *events) {
	setStreamHeaders(ctx)
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		for i := range ev.len() {
			if _, err := w.Write(ev.at(i)); err != nil {
				return
			}
			if err := w.Flush(); err != nil {
				return
			}
		}
	})
}

// cutStream sends the head of the answer and the first half of the events
// (at least one), then drops the connection mid-body, or with stall holds it
// open sending nothing more.
func (s *Server) cutStream(ctx *fasthttp.RequestCtx, ev *events, stall bool) {
	setStreamHeaders(ctx)
	ctx.Response.Header.SetContentLength(-1) // chunked
	head := append([]byte(nil), ctx.Response.Header.Header()...)
	n := max(ev.len()/2, 1)
	sent := make([][]byte, n)
	for i := range n {
		sent[i] = ev.at(i)
	}
	s.hijackStreamCut(ctx, head, sent, stall)
}

// head returns the stream's first n events.
func (e *events) head(n int) *events {
	return &events{b: e.b[:e.ends[n-1]], ends: e.ends[:n]}
}

// broken returns a stream of one event: the first event with its data cut in
// the middle of the JSON, for the malformed fault on a streamed call.
func (e *events) broken() *events {
	first := e.at(0)
	cut := len(first) / 2
	out := &events{b: make([]byte, 0, cut+2)}
	out.b = append(append(out.b, first[:cut]...), "\n\n"...)
	out.mark()
	return out
}

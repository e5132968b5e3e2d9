package providers

// Streamed answers: the server-sent event reader, and sseStream, which turns
// an upstream's event stream into chunks through a per-API eventDecoder and
// owns the stream's connection until Close.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// maxEventSize bounds one server-sent event (all its lines together), so a
// broken upstream cannot make us buffer without end.
const maxEventSize = 4 << 20

// errEventTooLarge reports an event past maxEventSize.
var errEventTooLarge = errors.New("server-sent event too large")

// sseEvent is one dispatched server-sent event. Its slices are valid until the
// next call of sseReader.next.
type sseEvent struct {
	name []byte // the event: field, empty when the event had none
	data []byte // the data: lines joined by \n
}

// sseReader reads server-sent events (the WHATWG event-stream format) from an
// upstream body. Lines end in \n or \r\n. Comments (": ping") and the id and
// retry fields are skipped.
type sseReader struct {
	r    *bufio.Reader
	name []byte
	data []byte
	line []byte // holds a line longer than the bufio buffer
	eof  bool
}

var sseBufPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 8<<10) }}

func newSSEReader(r io.Reader) *sseReader {
	br := sseBufPool.Get().(*bufio.Reader)
	br.Reset(r)
	return &sseReader{r: br}
}

// release returns the buffer to its pool; the reader is unusable afterwards.
func (s *sseReader) release() {
	if s.r != nil {
		s.r.Reset(nil)
		sseBufPool.Put(s.r)
		s.r = nil
	}
}

// next returns the next event with data. At the end of the body it returns
// io.EOF; an event whose complete lines lack only the closing blank line is
// still dispatched first, so an upstream that omits it loses nothing.
func (s *sseReader) next() (sseEvent, error) {
	s.name = s.name[:0]
	s.data = s.data[:0]
	hasData := false
	for {
		line, err := s.readLine()
		if err != nil {
			if err == io.EOF && hasData {
				return sseEvent{name: s.name, data: s.data}, nil
			}
			return sseEvent{}, err
		}
		if len(line) == 0 {
			if hasData {
				return sseEvent{name: s.name, data: s.data}, nil
			}
			s.name = s.name[:0] // an event without data is not dispatched
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "event":
			s.name = append(s.name[:0], value...)
		case "data":
			if hasData {
				s.data = append(s.data, '\n')
			}
			s.data = append(s.data, value...)
			hasData = true
		}
		if len(s.data)+len(s.name) > maxEventSize {
			return sseEvent{}, errEventTooLarge
		}
	}
}

// readLine returns the next line without its terminator. A last line cut
// before its newline is io.ErrUnexpectedEOF: the stream was cut, and half a
// JSON payload must not pass for a malformed one.
func (s *sseReader) readLine() ([]byte, error) {
	if s.eof {
		return nil, io.EOF
	}
	line, err := s.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		s.line = append(s.line[:0], line...)
		for err == bufio.ErrBufferFull {
			line, err = s.r.ReadSlice('\n')
			s.line = append(s.line, line...)
			if len(s.line) > maxEventSize {
				return nil, errEventTooLarge
			}
		}
		line = s.line
	}
	switch {
	case err == io.EOF:
		s.eof = true
		if len(line) == 0 {
			return nil, io.EOF
		}
		return nil, io.ErrUnexpectedEOF
	case err != nil:
		return nil, err
	}
	line = bytes.TrimSuffix(line, []byte{'\n'})
	line = bytes.TrimSuffix(line, []byte{'\r'})
	return line, nil
}

// eventDecoder turns one server-sent event into a chunk. (nil, nil) skips the
// event, io.EOF is the stream's clean end, a *streamEventError an error event
// and any other error a payload that does not parse.
type eventDecoder interface {
	decode(ev sseEvent) (*Chunk, error)
}

// streamEventError is an error event inside a stream, before its provider
// name and redaction are added.
type streamEventError struct{ detail providerErrorDetail }

func (e *streamEventError) Error() string { return "stream error event: " + e.detail.Type }

type readerFunc func(p []byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// sseStream is a streamed answer: the upstream's event stream decoded into
// chunks. Next and Close may be called from different goroutines.
type sseStream struct {
	up      *upstream
	a       *attempt
	resp    *fasthttp.Response
	body    io.Reader // resp's body stream
	sse     *sseReader
	dec     eventDecoder
	stopCtx func() bool
	ctxDone <-chan struct{} // Stream's ctx: already watched by the attempt

	mu       sync.Mutex // held by Next while it reads, and by Close
	deadline time.Time  // the attempt's deadline, until the first chunk
	idle     time.Duration
	err      error // the error that ended the stream
	closed   bool
	ended    atomic.Bool // the upstream ended the stream cleanly
}

var _ Stream = (*sseStream)(nil)

// Next returns the next chunk, io.EOF at the clean end, or a *Error: the
// upstream's error event, a cut connection (ClassServer), a stall longer than
// idle or no first chunk within the attempt timeout (ClassTimeout), ctx done
// or Close (ClassCanceled), a payload that does not parse (ClassMalformed).
func (s *sseStream) Next(ctx context.Context, idle time.Duration) (*Chunk, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, s.up.fail(ClassCanceled, 0, "the stream is closed", nil)
	case s.err != nil:
		return nil, s.err
	}
	if err := ctx.Err(); err != nil {
		return nil, s.end(s.up.fail(ClassCanceled, 0, "the call was canceled", err))
	}
	if done := ctx.Done(); done != nil && done != s.ctxDone {
		stop := context.AfterFunc(ctx, func() { s.a.abort(ClassCanceled) })
		defer stop()
	}
	s.idle = idle
	for {
		ev, err := s.sse.next()
		if err != nil {
			return nil, s.end(s.readError(ctx, err))
		}
		c, err := s.dec.decode(ev)
		switch {
		case err == io.EOF:
			s.ended.Store(true)
			s.err = io.EOF
			return nil, io.EOF
		case err != nil:
			var ee *streamEventError
			if errors.As(err, &ee) {
				return nil, s.end(s.up.eventError(ee.detail))
			}
			return nil, s.end(s.up.fail(ClassMalformed, 0, "a stream event could not be read", err))
		case c != nil:
			s.deadline = time.Time{} // the attempt timeout ends with the first chunk
			return c, nil
		}
	}
}

// read is the body reader under the SSE parser: before each network read it
// arms the read deadline, so a stall is measured from the last bytes that
// came. Until the first chunk the attempt's deadline also applies.
func (s *sseStream) read(p []byte) (int, error) {
	var d time.Time
	if s.idle > 0 {
		d = time.Now().Add(s.idle)
	}
	if !s.deadline.IsZero() && (d.IsZero() || s.deadline.Before(d)) {
		d = s.deadline
	}
	if err := s.a.setReadDeadline(d); err != nil {
		return 0, err
	}
	return s.body.Read(p)
}

func (s *sseStream) readError(ctx context.Context, err error) *Error {
	if r := s.a.reason(); r == ClassCanceled || ctx.Err() != nil {
		return s.up.fail(ClassCanceled, 0, "the call was canceled", err)
	}
	switch {
	case errors.Is(err, errEventTooLarge):
		return s.up.fail(ClassMalformed, 0, "a stream event is too large", err)
	case classOfTransportError(err) == ClassTimeout:
		if !s.deadline.IsZero() && !time.Now().Before(s.deadline) {
			return s.up.fail(ClassTimeout, 0, "no first chunk within the attempt timeout", err)
		}
		return s.up.fail(ClassTimeout, 0, fmt.Sprintf("the stream stalled for more than %s", s.idle), err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return s.up.fail(ClassServer, 0, "upstream stream ended early", err)
	}
	return s.up.fail(ClassServer, 0, "upstream stream ended early: "+err.Error(), err)
}

// end records the error that ends the stream.
func (s *sseStream) end(e *Error) error {
	s.err = e
	return e
}

// Close releases the connection and the pooled objects. A stream that did not
// end cleanly is aborted (its connection closed, which also ends a Next
// blocked in another goroutine). Safe to call more than once.
func (s *sseStream) Close() error {
	if !s.ended.Load() {
		s.a.abort(ClassCanceled)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.err == nil {
		s.err = s.up.fail(ClassCanceled, 0, "the stream is closed", nil)
	}
	reuse := false
	if s.ended.Load() && s.a.reason() == "" {
		// Read the rest of the body (the chunk terminator) so the
		// connection can serve another call.
		if s.a.setReadDeadline(time.Now().Add(drainTimeout)) == nil {
			_, reuse = readLimited(s.body, 64<<10)
		}
	}
	if s.sse != nil {
		s.sse.release()
	}
	s.finish(reuse)
	return nil
}

// finish gives back the body stream, the connection and the response.
func (s *sseStream) finish(reuse bool) {
	s.stopCtx()
	_ = s.resp.CloseBodyStream()
	if s.a.release != nil {
		s.a.release(reuse)
	}
	fasthttp.ReleaseResponse(s.resp)
	s.resp, s.body = nil, nil
}

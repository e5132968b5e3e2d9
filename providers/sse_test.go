package providers

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/valyala/fasthttp"
)

func TestSSEReaderSplitsEvents(t *testing.T) {
	type ev struct{ name, data string }
	tests := []struct {
		name    string
		in      string
		want    []ev
		wantErr error
	}{
		{"data only", "data: a\n\ndata: b\n\n", []ev{{"", "a"}, {"", "b"}}, io.EOF},
		{"named events", "event: x\ndata: 1\n\nevent: y\ndata: 2\n\n", []ev{{"x", "1"}, {"y", "2"}}, io.EOF},
		{"CRLF lines", "event: x\r\ndata: 1\r\n\r\n", []ev{{"x", "1"}}, io.EOF},
		{"multi-line data joined by newlines", "data: a\ndata: b\ndata:c\n\n", []ev{{"", "a\nb\nc"}}, io.EOF},
		{"only one leading space is stripped", "data:  two\n\n", []ev{{"", " two"}}, io.EOF},
		{"comments, id and retry are skipped", ": ping\nid: 7\nretry: 100\ndata: x\n\n", []ev{{"", "x"}}, io.EOF},
		{"an event without data is not dispatched", "event: lonely\n\ndata: x\n\n", []ev{{"", "x"}}, io.EOF},
		{"blank lines between events", "\n\n\ndata: x\n\n\n", []ev{{"", "x"}}, io.EOF},
		{"a field without a colon", "data\n\n", []ev{{"", ""}}, io.EOF},
		{"missing final blank line still dispatches", "data: [DONE]\n", []ev{{"", "[DONE]"}}, io.EOF},
		{"a line cut before its newline is an unexpected EOF", "data: x\n\ndata: {\"id", []ev{{"", "x"}}, io.ErrUnexpectedEOF},
		{"long line beyond the buffer", "data: " + strings.Repeat("z", 20000) + "\n\n", []ev{{"", strings.Repeat("z", 20000)}}, io.EOF},
	}
	for _, tt := range tests {
		for _, oneByte := range []bool{false, true} {
			name := tt.name
			var r io.Reader = strings.NewReader(tt.in)
			if oneByte {
				name += " (one byte reads)"
				r = iotest.OneByteReader(r)
			}
			t.Run(name, func(t *testing.T) {
				s := newSSEReader(r)
				defer s.release()
				var got []ev
				var err error
				for {
					var e sseEvent
					if e, err = s.next(); err != nil {
						break
					}
					got = append(got, ev{string(e.name), string(e.data)})
				}
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("ended with %v, want %v", err, tt.wantErr)
				}
				if len(got) != len(tt.want) {
					t.Fatalf("got %q, want %q", got, tt.want)
				}
				for i := range got {
					if got[i] != tt.want[i] {
						t.Errorf("event %d: got %q, want %q", i, got[i], tt.want[i])
					}
				}
			})
		}
	}
	t.Run("an event over the size limit", func(t *testing.T) {
		s := newSSEReader(strings.NewReader("data: " + strings.Repeat("z", maxEventSize+10) + "\n\n"))
		defer s.release()
		if _, err := s.next(); !errors.Is(err, errEventTooLarge) {
			t.Errorf("got %v", err)
		}
	})
}

// scriptServer is an upstream whose streamed answer a test writes itself.
// Its handlers may block on release, which is closed at cleanup before the
// server shuts down.
type scriptServer struct {
	release chan struct{}
	base    string
}

func startScript(t *testing.T, contentType string, write func(w *bufio.Writer, release <-chan struct{})) *scriptServer {
	t.Helper()
	ss := &scriptServer{release: make(chan struct{})}
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType(contentType)
			ctx.SetBodyStreamWriter(func(w *bufio.Writer) { write(w, ss.release) })
		},
		Logger: quiet{},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		close(ss.release)
		_ = srv.Shutdown()
		wg.Wait()
	})
	ss.base = "http://" + ln.Addr().String()
	return ss
}

type quiet struct{}

func (quiet) Printf(string, ...any) {}

// send writes s and flushes it, so it leaves at once.
func send(w *bufio.Writer, s string) {
	_, _ = w.WriteString(s)
	_ = w.Flush()
}

const (
	openAIChunk  = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n"
	anthropicMsg = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"m\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n"
)

// firstEvent is a valid first event of each kind's stream.
var firstEvent = map[string]string{KindOpenAI: openAIChunk, KindAnthropic: anthropicMsg}

func TestStreamStallLongerThanIdleIsATimeout(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ss := startScript(t, "text/event-stream", func(w *bufio.Writer, release <-chan struct{}) {
				send(w, firstEvent[kind])
				for i := 0; i < 3; i++ { // comments keep it alive for a while
					time.Sleep(40 * time.Millisecond)
					send(w, ": keep-alive\n\n")
				}
				<-release
			})
			p := newProvider(t, kind, ss.base)
			s, err := p.Stream(context.Background(), userRequest("hi"), Call{Model: "m", Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Next(context.Background(), 100*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = s.Next(context.Background(), 100*time.Millisecond)
			pe := checkError(t, err, ClassTimeout)
			elapsed := time.Since(start)
			// The keep-alive comments are bytes: the stall is measured from
			// the last of them (about 120ms in), not from the call of Next.
			if elapsed < 150*time.Millisecond || elapsed > time.Second || !strings.Contains(pe.Message, "stalled") {
				t.Errorf("timed out after %s: %v", elapsed, err)
			}
		})
	}
}

func TestStreamFirstChunkIsBoundedByTheAttemptTimeout(t *testing.T) {
	ss := startScript(t, "text/event-stream", func(w *bufio.Writer, release <-chan struct{}) {
		send(w, ": headers are out, no chunk yet\n\n")
		<-release
	})
	p := newProvider(t, KindOpenAI, ss.base)
	start := time.Now()
	s, err := p.Stream(context.Background(), userRequest("hi"), Call{Model: "m", Timeout: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Next(context.Background(), 0)
	pe := checkError(t, err, ClassTimeout)
	if elapsed := time.Since(start); elapsed > time.Second || !strings.Contains(pe.Message, "first chunk") {
		t.Errorf("after %s: %v", elapsed, err)
	}
}

func TestStreamErrorEventsAreClassified(t *testing.T) {
	tests := []struct {
		kind  string
		event string
		want  Class
		typ   string
	}{
		{KindOpenAI, "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n", ClassServer, "server_error"},
		{KindAnthropic, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n", ClassOverloaded, "overloaded_error"},
		{KindAnthropic, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal\"}}\n\n", ClassServer, "api_error"},
	}
	for _, tt := range tests {
		t.Run(tt.kind+"/"+tt.typ, func(t *testing.T) {
			ss := startScript(t, "text/event-stream", func(w *bufio.Writer, _ <-chan struct{}) {
				send(w, firstEvent[tt.kind])
				send(w, tt.event)
			})
			p := newProvider(t, tt.kind, ss.base)
			s, err := p.Stream(context.Background(), userRequest("hi"), Call{Model: "m", Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			n, err := countUntilError(s)
			pe := checkError(t, err, tt.want)
			if n != 1 || pe.Type != tt.typ || pe.Message == "" || pe.Provider != tt.kind {
				t.Errorf("%d chunks, then %+v", n, pe)
			}
		})
	}
}

func TestStreamEndWithoutItsMarkerIsAServerError(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ss := startScript(t, "text/event-stream", func(w *bufio.Writer, _ <-chan struct{}) {
				send(w, firstEvent[kind]) // then a clean end of the body, but no [DONE] / message_stop
			})
			p := newProvider(t, kind, ss.base)
			s, err := p.Stream(context.Background(), userRequest("hi"), Call{Model: "m", Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = countUntilError(s)
			pe := checkError(t, err, ClassServer)
			if pe.Message != "upstream stream ended early" {
				t.Errorf("got %v", err)
			}
		})
	}
}

func TestStreamThatIsNotAnEventStreamIsMalformed(t *testing.T) {
	ss := startScript(t, "application/json", func(w *bufio.Writer, _ <-chan struct{}) {
		send(w, `{"id":"x","object":"chat.completion","choices":[]}`)
	})
	p := newProvider(t, KindOpenAI, ss.base)
	_, err := p.Stream(context.Background(), userRequest("hi"), Call{Model: "m", Timeout: time.Second})
	checkError(t, err, ClassMalformed)
}

func TestStreamCancelEndsNextPromptly(t *testing.T) {
	stall := func(kind string) func(w *bufio.Writer, release <-chan struct{}) {
		return func(w *bufio.Writer, release <-chan struct{}) {
			send(w, firstEvent[kind])
			<-release
		}
	}
	for _, kind := range kinds {
		t.Run(kind+"/ctx of Next", func(t *testing.T) {
			ss := startScript(t, "text/event-stream", stall(kind))
			p := newProvider(t, kind, ss.base)
			s, err := p.Stream(context.Background(), userRequest("hi"), Call{Model: "m", Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Next(context.Background(), 0); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			start := time.Now()
			_, err = s.Next(ctx, 0)
			checkError(t, err, ClassCanceled)
			if elapsed := time.Since(start); elapsed > 500*time.Millisecond {
				t.Errorf("took %s", elapsed)
			}
		})
		t.Run(kind+"/ctx of Stream", func(t *testing.T) {
			ss := startScript(t, "text/event-stream", stall(kind))
			p := newProvider(t, kind, ss.base)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s, err := p.Stream(ctx, userRequest("hi"), Call{Model: "m", Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Next(ctx, 0); err != nil {
				t.Fatal(err)
			}
			time.AfterFunc(50*time.Millisecond, cancel)
			_, err = s.Next(context.Background(), 0)
			checkError(t, err, ClassCanceled)
		})
		t.Run(kind+"/Close from another goroutine", func(t *testing.T) {
			ss := startScript(t, "text/event-stream", stall(kind))
			p := newProvider(t, kind, ss.base)
			s, err := p.Stream(context.Background(), userRequest("hi"), Call{Model: "m", Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Next(context.Background(), 0); err != nil {
				t.Fatal(err)
			}
			time.AfterFunc(50*time.Millisecond, func() { s.Close() })
			start := time.Now()
			_, err = s.Next(context.Background(), 0)
			checkError(t, err, ClassCanceled)
			if elapsed := time.Since(start); elapsed > 500*time.Millisecond {
				t.Errorf("took %s", elapsed)
			}
			s.Close()
			if _, err := s.Next(context.Background(), 0); err == nil {
				t.Error("Next after Close returned no error")
			}
			if n := hostClientOf(p).hc.ConnsCount(); n != 0 {
				t.Errorf("%d connections left", n)
			}
		})
	}
}

// A body reader over a closed stream must never be read again: Close gives
// the pooled objects back exactly once even when called concurrently.
func TestStreamCloseIsSafeConcurrently(t *testing.T) {
	ss := startScript(t, "text/event-stream", func(w *bufio.Writer, release <-chan struct{}) {
		send(w, openAIChunk)
		<-release
	})
	p := newProvider(t, KindOpenAI, ss.base)
	s, err := p.Stream(context.Background(), userRequest("hi"), Call{Model: "m", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.Close()
		}()
	}
	wg.Wait()
	if !bytes.Contains([]byte(s.(*sseStream).err.Error()), []byte("closed")) {
		t.Errorf("err %v", s.(*sseStream).err)
	}
}

package pipeline

import (
	"bufio"
	"context"
	"io"
	"testing"
	"time"

	"github.com/llm-gateway/gateway/providers"
)

// chanStream is a providers.Stream fed by a test, one Next at a time.
type chanStream struct{ next chan chunkOrErr }

func (s *chanStream) Next(ctx context.Context, _ time.Duration) (*providers.Chunk, error) {
	select {
	case it := <-s.next:
		return it.c, it.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *chanStream) Close() error { return nil }

// flushes hands each flushed write to the test.
type flushes chan string

func (f flushes) Write(p []byte) (int, error) { f <- string(p); return len(p), nil }

// A heartbeat tick pings only a stream that was quiet since the last tick:
// a tick that follows a chunk just clears the mark. The ticks are the test's
// own channel, so the order is exact.
func TestHeartbeatPingsOnlyAQuietStream(t *testing.T) {
	st := &chanStream{next: make(chan chunkOrErr)}
	h := &StreamHandle{r: &run{e: &Engine{}, stream: st}}
	out := make(flushes, 16)
	first := &providers.Chunk{Raw: []byte(`{"n":0}`)}
	fwd := &chunkWriter{w: bufio.NewWriter(out), first: first}
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		err, _ := segment(ctx, cancel, fwd, h, tick)
		done <- err
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-out:
			if got != want {
				t.Fatalf("wrote %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("nothing written, want %q", want)
		}
	}
	st.next <- chunkOrErr{c: &providers.Chunk{Raw: []byte(`{"n":1}`)}}
	expect("data: {\"n\":1}\n\n")
	tick <- time.Time{} // a chunk went out since the last tick: no ping
	tick <- time.Time{} // quiet since: a ping
	expect(": ping\n\n")
	st.next <- chunkOrErr{c: &providers.Chunk{Raw: []byte(`{"n":2}`)}}
	expect("data: {\"n\":2}\n\n") // not a second ping
	st.next <- chunkOrErr{err: io.EOF}
	expect("data: [DONE]\n\n")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

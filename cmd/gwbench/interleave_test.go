package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// Two servers on loopback take turns: both are measured, and never does one
// serve while the other still has a request of the loop in flight.
func TestInterleavedLoopTakesTurnsWithoutOverlap(t *testing.T) {
	var inflight [2]atomic.Int64
	var overlaps, served [2]atomic.Int64
	handler := func(k int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			inflight[k].Add(1)
			if inflight[1-k].Load() > 0 {
				overlaps[k].Add(1)
			}
			time.Sleep(200 * time.Microsecond)
			served[k].Add(1)
			inflight[k].Add(-1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{}`))
		}
	}
	var ts []target
	for k := range 2 {
		srv := httptest.NewServer(handler(k))
		defer srv.Close()
		addr := srv.Listener.Addr().String()
		ts = append(ts, target{Addr: addr, Req: buildRequest(addr, "/", []byte(`{}`)), Expect: 200, Watch: []int{os.Getpid(), os.Getpid()}})
	}
	res, err := interleavedLoop(context.Background(), ts, 4, 20*time.Millisecond, 100*time.Millisecond, 20*time.Millisecond, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	for k, r := range res {
		if r.Requests <= 0 || r.Errors != 0 || r.Bad != 0 {
			t.Errorf("target %d: %+v, want requests and no errors", k, r)
		}
		// Five turns of 20 ms each, plus the drains.
		if r.Elapsed < 100*time.Millisecond || r.Elapsed > time.Second {
			t.Errorf("target %d measured for %s, want 100 ms of turns", k, r.Elapsed)
		}
		if len(r.CPU.Watch) != 2 {
			t.Errorf("target %d: CPU of %d processes, want 2", k, len(r.CPU.Watch))
		}
		// The warm-up turn is served but not counted.
		if got := served[k].Load(); got <= r.Requests {
			t.Errorf("target %d: served %d, counted %d: the warm-up was counted", k, got, r.Requests)
		}
	}
	if n := overlaps[0].Load() + overlaps[1].Load(); n != 0 {
		t.Fatalf("%d requests were served while the other target had one in flight", n)
	}
}

func TestInterleavedLoopStopsWithItsContext(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	ts := []target{{Addr: addr, Req: buildRequest(addr, "/", nil), Expect: 200, Watch: []int{os.Getpid()}}}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := interleavedLoop(ctx, ts, 2, 10*time.Millisecond, time.Minute, 20*time.Millisecond, 1_000_000); err == nil {
		t.Fatal("no error after the context ended")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("returned after %s", d)
	}
}

package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// The throughput phase compares configurations on a VM whose speed moves by
// tens of percent within seconds. Run one after the other, even in
// alternating rounds, two windows of a few seconds can land in different
// phases of the VM (one run's rounds put the same two binaries at 1.15× and
// 1.82× of each other). interleavedLoop therefore lets the configurations
// take short turns within one window, so that each sees the same phases.

// turnSlice is how long one configuration sends in one turn.
const turnSlice = 250 * time.Millisecond

// gate lets a target's workers send only during its turns.
type gate struct {
	open     atomic.Bool
	inflight atomic.Int64

	mu   sync.Mutex
	wake chan struct{} // closed when a turn begins
}

func newGate() *gate { return &gate{wake: make(chan struct{})} }

// enter blocks until a turn is on (true) or stop is closed (false). A worker
// that entered sends one request and then calls leave.
func (g *gate) enter(stop <-chan struct{}) bool {
	for {
		if g.open.Load() {
			g.inflight.Add(1)
			if g.open.Load() {
				return true
			}
			g.inflight.Add(-1) // the turn ended in between
		}
		g.mu.Lock()
		wake := g.wake
		g.mu.Unlock()
		if g.open.Load() {
			continue
		}
		select {
		case <-wake:
		case <-stop:
			return false
		}
	}
}

func (g *gate) leave() { g.inflight.Add(-1) }

// begin starts a turn.
func (g *gate) begin() {
	g.mu.Lock()
	g.open.Store(true)
	close(g.wake)
	g.wake = make(chan struct{})
	g.mu.Unlock()
}

// end stops new requests and waits until those in flight are answered (or
// until deadline), so that a turn's requests and its CPU belong to it alone.
func (g *gate) end(deadline time.Time) {
	g.open.Store(false)
	for g.inflight.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Microsecond)
	}
}

// turnSum adds up one target's turns.
type turnSum struct {
	res               closedResult
	otherNs, stealNs  float64 // OtherPct and StealPct weighted by each turn's length
	errs0, bad0, req0 int64
}

func (s *turnSum) add(d cpuDelta, elapsed time.Duration) {
	if s.res.CPU.Watch == nil {
		s.res.CPU.Watch = make([]time.Duration, len(d.Watch))
	}
	for i := range d.Watch {
		s.res.CPU.Watch[i] += d.Watch[i]
	}
	s.res.CPU.Self += d.Self
	s.res.Elapsed += elapsed
	s.otherNs += d.OtherPct * float64(elapsed)
	s.stealNs += d.StealPct * float64(elapsed)
}

// interleavedLoop is closedLoop for several targets at once, taking turns:
// each target has its own conns workers and connections, and only the
// target whose turn it is sends (turns of slice, in the order of ts, round
// and round). A turn ends by letting its requests in flight finish; its
// requests and the CPU of its processes are then added to its total. First
// every target has one turn of warmup, not counted; then the turns go on
// until each has sent for window. Bounded in time (each turn, and each
// request's I/O deadline) and in count (maxRequests per target).
func interleavedLoop(ctx context.Context, ts []target, conns int, warmup, window, slice time.Duration, maxRequests int64) ([]closedResult, error) {
	turns := max(int((window+slice-1)/slice), 1)
	deadline := time.Now().Add(time.Duration(len(ts)) * (warmup + window + 2*time.Second))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()

	gates := make([]*gate, len(ts))
	counts := make([][]counter, len(ts))
	for k, t := range ts {
		gates[k] = newGate()
		counts[k] = make([]counter, conns)
		perWorker := max(maxRequests/int64(conns), 1)
		for w := range conns {
			wg.Add(1)
			go func(g *gate, cnt *counter) {
				defer wg.Done()
				c := &conn{addr: t.Addr, deadline: deadline}
				defer c.close()
				for i := int64(0); i < perWorker && g.enter(stop); i++ {
					r, err := c.do(t.Req)
					switch {
					case err != nil:
						cnt.errs.Add(1)
					case r.Status != t.Expect:
						cnt.bad.Add(1)
						cnt.n.Add(1)
					default:
						cnt.n.Add(1)
					}
					g.leave()
				}
			}(gates[k], &counts[k][w])
		}
	}
	sum := func(k int) (n, errs, bad int64) {
		for i := range counts[k] {
			n += counts[k][i].n.Load()
			errs += counts[k][i].errs.Load()
			bad += counts[k][i].bad.Load()
		}
		return
	}
	turn := func(k int, d time.Duration) (cpuDelta, time.Duration, error) {
		cpu0 := snapCPU(ts[k])
		t0 := time.Now()
		gates[k].begin()
		ok := sleepCtx(ctx, d)
		gates[k].end(deadline)
		elapsed := time.Since(t0)
		if !ok {
			return cpuDelta{}, 0, ctx.Err()
		}
		if time.Now().After(deadline) {
			return cpuDelta{}, 0, fmt.Errorf("%s: requests still in flight at the phase's deadline", ts[k].Addr)
		}
		return snapCPU(ts[k]).sub(cpu0), elapsed, nil
	}

	sums := make([]turnSum, len(ts))
	for k := range ts {
		if _, _, err := turn(k, warmup); err != nil {
			return nil, err
		}
		sums[k].req0, sums[k].errs0, sums[k].bad0 = sum(k)
	}
	for range turns {
		for k := range ts {
			d, elapsed, err := turn(k, slice)
			if err != nil {
				return nil, err
			}
			sums[k].add(d, elapsed)
			if _, errs, _ := sum(k); errs > maxErrors {
				return nil, fmt.Errorf("%s: %w", ts[k].Addr, errTooManyErrors)
			}
		}
	}
	out := make([]closedResult, len(ts))
	for k := range ts {
		n, errs, bad := sum(k)
		s := &sums[k]
		r := s.res
		r.Requests, r.Errors, r.Bad = n-s.req0, errs-s.errs0, bad-s.bad0
		if r.Elapsed > 0 {
			r.CPU.OtherPct = s.otherNs / float64(r.Elapsed)
			r.CPU.StealPct = s.stealNs / float64(r.Elapsed)
		}
		out[k] = r
	}
	return out, nil
}

package main

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// target is what a phase sends and to where.
type target struct {
	Addr   string
	Req    []byte
	Expect int   // the status every answer should have
	Watch  []int // pids whose CPU time is measured over the phase
	// Ours is every process of the bench but gwbench itself (which is
	// added), so that the CPU the rest of the machine used can be told apart.
	Ours []int
}

// maxErrors ends a phase early: past it the numbers mean nothing.
const maxErrors = 1000

var errTooManyErrors = errors.New("too many failed requests")

// closedResult is one closed-loop phase: the timed window only.
type closedResult struct {
	Requests int64
	Errors   int64 // transport errors
	Bad      int64 // answers with another status than expected
	Elapsed  time.Duration
	CPU      cpuDelta
}

// RPS is requests per second over the window.
func (r closedResult) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// counter is one worker's counts, padded to a cache line of its own so the
// workers do not share one.
type counter struct {
	n, errs, bad atomic.Int64
	_            [40]byte
}

// closedLoop runs conns workers, each sending its next request as soon as
// the previous answer is read, for warmup (not counted) then duration (the
// window). It measures the most the target can serve at that concurrency.
// Bounded in time (the window, then each request's I/O deadline) and in
// count (maxRequests).
func closedLoop(ctx context.Context, t target, conns int, warmup, duration time.Duration, maxRequests int64) (closedResult, error) {
	deadline := time.Now().Add(warmup + duration + 10*time.Second)
	counts := make([]counter, conns)
	var stop atomic.Bool
	var wg sync.WaitGroup
	perWorker := max(maxRequests/int64(conns), 1)
	for w := range conns {
		wg.Add(1)
		go func(cnt *counter) {
			defer wg.Done()
			c := &conn{addr: t.Addr, deadline: deadline}
			defer c.close()
			for i := int64(0); i < perWorker && !stop.Load(); i++ {
				r, err := c.do(t.Req)
				switch {
				case err != nil:
					if cnt.errs.Add(1) > maxErrors/int64(conns)+1 || time.Now().After(deadline) {
						return
					}
				case r.Status != t.Expect:
					cnt.bad.Add(1)
					cnt.n.Add(1)
				default:
					cnt.n.Add(1)
				}
			}
		}(&counts[w])
	}
	defer func() { stop.Store(true); wg.Wait() }()

	sum := func() (n, errs, bad int64) {
		for i := range counts {
			n += counts[i].n.Load()
			errs += counts[i].errs.Load()
			bad += counts[i].bad.Load()
		}
		return
	}
	if !sleepCtx(ctx, warmup) {
		return closedResult{}, ctx.Err()
	}
	n0, e0, b0 := sum()
	cpu0 := snapCPU(t)
	t0 := time.Now()
	if !sleepCtx(ctx, duration) {
		return closedResult{}, ctx.Err()
	}
	n1, e1, b1 := sum()
	cpu1 := snapCPU(t)
	r := closedResult{Requests: n1 - n0, Errors: e1 - e0, Bad: b1 - b0, Elapsed: time.Since(t0), CPU: cpu1.sub(cpu0)}
	if e1 > maxErrors {
		return r, errTooManyErrors
	}
	return r, nil
}

// openResult is one open-loop phase.
type openResult struct {
	Sent    int
	Errors  int
	Bad     int
	Latency latencySummary // scheduled send to the end of the answer
	TTFB    latencySummary // scheduled send to the first byte of the body
	Lag     latencySummary // scheduled send to the actual write: the generator's own delay
	// Pace is the pacer's own lateness: from each request's due time to its
	// hand-off to the connections. Unlike Lag it includes no wait for a
	// free connection, so no target, however slow, can move it: it says
	// whether the machine let the generator keep its schedule.
	Pace latencySummary
	CPU  cpuDelta
}

// openLoop sends requests on a fixed timeline (sched), whatever the answers
// do, over a pool of conns connections, and measures each from its due time.
// A late answer thus delays nothing but itself, and a request that had to
// wait for a free connection is charged the wait: the numbers are free of
// coordinated omission.
func openLoop(ctx context.Context, t target, conns int, sched schedule) (openResult, error) {
	count := sched.Count()
	lat := make([]time.Duration, count)
	ttfb := make([]time.Duration, count)
	lag := make([]time.Duration, count)
	late := make([]time.Duration, count)
	status := make([]int, count) // 0: transport error

	// Connect first, so no request pays for a dial.
	start := time.Now().Add(50 * time.Millisecond)
	deadline := start.Add(sched.Duration + 10*time.Second)
	pool := make([]*conn, conns)
	for i := range pool {
		pool[i] = &conn{addr: t.Addr, deadline: deadline}
		if err := pool[i].dial(); err != nil {
			for _, c := range pool[:i] {
				c.close()
			}
			return openResult{}, err
		}
	}

	jobs := make(chan int, count) // never blocks the pacer
	var wg sync.WaitGroup
	for _, c := range pool {
		wg.Add(1)
		go func(c *conn) {
			defer wg.Done()
			defer c.close()
			for i := range jobs {
				due := start.Add(sched.Due(i))
				sent := time.Now()
				r, err := c.do(t.Req)
				done := time.Now()
				lag[i] = sent.Sub(due)
				if err != nil {
					continue
				}
				status[i] = r.Status
				lat[i] = done.Sub(due)
				if !r.FirstBody.IsZero() {
					ttfb[i] = r.FirstBody.Sub(due)
				}
			}
		}(c)
	}

	cpu0 := snapCPU(t)
	sent := pace(ctx, start, sched, jobs, late)
	close(jobs)
	wg.Wait()
	cpu1 := snapCPU(t)

	res := openResult{Sent: sent, CPU: cpu1.sub(cpu0)}
	var okLat, okTTFB []time.Duration
	for i := range sent {
		switch {
		case status[i] == 0:
			res.Errors++
			continue
		case status[i] != t.Expect:
			res.Bad++
		}
		okLat = append(okLat, lat[i])
		if ttfb[i] > 0 {
			okTTFB = append(okTTFB, ttfb[i])
		}
	}
	res.Latency = summarize(okLat)
	res.TTFB = summarize(okTTFB)
	res.Lag = summarize(lag[:sent])
	res.Pace = summarize(late[:sent])
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if res.Errors > maxErrors {
		return res, errTooManyErrors
	}
	return res, nil
}

// pace hands out request indexes at their due times and returns how many it
// handed out. Go's timers sleep in whole milliseconds when the process is
// idle (the netpoller's epoll_wait takes milliseconds), which at 1,000 req/s
// would make the generator the noisiest part of the measurement; so the pacer
// holds an OS thread of its own, with a 1 ns timer slack, and sleeps with
// nanosleep(2): due times are met within tens of microseconds. late[i] is
// how late request i was handed out.
func pace(ctx context.Context, start time.Time, sched schedule, jobs chan<- int, late []time.Duration) int {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer preciseTimer()()

	count := sched.Count()
	for i := range count {
		if i%256 == 0 && ctx.Err() != nil {
			return i
		}
		due := start.Add(sched.Due(i))
		sleepUntil(due)
		late[i] = time.Since(due)
		jobs <- i
	}
	return count
}

// sleepCtx sleeps d, or less if ctx ends first; false in that case.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

package pipeline

import (
	"container/heap"
	"context"
	"fmt"
	"io"
	"math/rand"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llm-gateway/gateway/fsm"
	"github.com/llm-gateway/gateway/providers"
)

// This file writes journals for replay's tests and benchmarks the way the
// orchestrator does: real fsm machines whose hook is a real Journal, driven
// through realistic journeys on a simulated clock. Nothing here is faked
// below the policy: every line comes from Journal, every transition from a
// machine that refuses what its table refuses.

// genClock is the generator's clock; it moves only when told.
type genClock struct{ t time.Time }

func (c *genClock) now() time.Time          { return c.t }
func (c *genClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// logGen drives machines into a Journal.
type logGen struct {
	out      io.Writer
	j        *Journal
	clock    *genClock
	breakers map[string]*simBreaker
	names    []string // providers, sorted
	tally    genTally
}

// genTally is what the generator did, for comparing with what replay found.
type genTally struct {
	received, succeeded, failed, rejected int64
	byStatus                              map[int]int64
	attempts                              map[int]int64
	trips, probes, recovers, reopens      map[string]int64
	failoversOut, failoversIn, skipped    map[string]int64
	restarts, unrelated                   int64
}

var genEpoch = time.Date(2026, 11, 26, 0, 12, 0, 123456000, time.UTC)

func newLogGen(out io.Writer, format string) *logGen {
	c := &genClock{t: genEpoch}
	// The journal flushes from its own goroutine; unrelated lines are
	// written from this one: both go through one lock.
	out = &genWriter{w: out}
	g := &logGen{out: out, clock: c, j: NewJournal(out, format, c.now), names: []string{"anthropic", "openai"}}
	g.tally = genTally{byStatus: map[int]int64{}, attempts: map[int]int64{},
		trips: map[string]int64{}, probes: map[string]int64{}, recovers: map[string]int64{}, reopens: map[string]int64{},
		failoversOut: map[string]int64{}, failoversIn: map[string]int64{}, skipped: map[string]int64{}}
	g.resetBreakers()
	return g
}

// start logs the orchestrator's start line; breakers begin closed again.
func (g *logGen) start() {
	g.j.Start("listen", "127.0.0.1:8080", "providers", fmt.Sprint(g.names))
	g.resetBreakers()
	g.tally.restarts++
}

func (g *logGen) resetBreakers() {
	g.breakers = map[string]*simBreaker{}
	for _, n := range g.names {
		g.breakers[n] = &simBreaker{g: g, name: n, m: fsm.Breaker.New(n, g.j.Transition, g.clock.now)}
	}
}

// unrelated writes a line that is not the journal's, as a wrapper script or
// the Go runtime might.
func (g *logGen) unrelated(text string) {
	g.j.Flush()
	fmt.Fprintln(g.out, text)
	g.tally.unrelated++
}

// close flushes the journal.
func (g *logGen) close() { g.j.Close() }

// genWriter serialises writes and counts their bytes.
type genWriter struct {
	mu sync.Mutex
	w  io.Writer
	n  atomic.Int64
}

func (c *genWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// reqDriver is one request's machine.
type reqDriver struct {
	g        *logGen
	m        *fsm.Machine
	attempts int
	current  string // the provider last attempted or skipped
}

// receive logs a request's arrival and returns its machine.
func (g *logGen) receive(id, model string) *reqDriver {
	g.j.Received(id, model, false, time.Time{})
	g.tally.received++
	return &reqDriver{g: g, m: fsm.Request.New(id, g.j.Transition, g.clock.now)}
}

func (d *reqDriver) fire(e fsm.Event, det fsm.Detail) {
	if _, err := d.m.Fire(context.Background(), e, det); err != nil {
		panic(err) // the generator must only write legal journeys
	}
	t := &d.g.tally
	switch e {
	case fsm.EventSucceed:
		t.succeeded++
	case fsm.EventGiveUp, fsm.EventReject:
		t.failed++
		t.byStatus[det.Status]++
		if e == fsm.EventReject {
			t.rejected++
		}
	case fsm.EventFailover:
		if d.current != "" {
			t.failoversOut[d.current]++
		}
		t.failoversIn[det.Provider]++
		d.current = det.Provider
	}
	if d.m.Done() {
		t.attempts[d.attempts]++
	}
}

func (d *reqDriver) validate() { d.fire(fsm.EventValidate, fsm.Detail{}) }

func (d *reqDriver) reject(status int, reason string) {
	d.fire(fsm.EventReject, fsm.Detail{Status: status, Reason: reason})
}

func (d *reqDriver) attempt(provider, model string) {
	d.attempts++
	d.current = provider
	d.fire(fsm.EventAttempt, fsm.Detail{Attempt: d.attempts, Provider: provider, Model: model})
}

// failed logs the outcome of the current attempt, as the engine does.
func (d *reqDriver) failed(provider string, class providers.Class, status int, retryAfter, latency time.Duration, msg string) {
	d.g.j.Failed(d.m.ID(), d.attempts, provider, &providers.Error{Class: class, Provider: provider, Status: status, RetryAfter: retryAfter, Message: msg}, latency)
}

func (d *reqDriver) skipped(provider string, probeIn time.Duration) {
	d.g.j.Skipped(d.m.ID(), provider, fsm.Open, probeIn)
	d.g.tally.skipped[provider]++
	d.current = provider
}

func (d *reqDriver) retry(provider string, class providers.Class, wait time.Duration) {
	d.fire(fsm.EventRetry, fsm.Detail{Attempt: d.attempts, Provider: provider, ErrorClass: string(class), Wait: wait})
}

func (d *reqDriver) failover(provider string, class providers.Class, reason string) {
	d.fire(fsm.EventFailover, fsm.Detail{Provider: provider, ErrorClass: string(class), Reason: reason})
}

func (d *reqDriver) succeed(provider string) {
	d.fire(fsm.EventSucceed, fsm.Detail{Attempt: d.attempts, Provider: provider, Status: 200})
}

func (d *reqDriver) giveUp(provider string, class providers.Class, status int, reason string) {
	d.fire(fsm.EventGiveUp, fsm.Detail{Attempt: d.attempts, Provider: provider, ErrorClass: string(class), Status: status, Reason: reason})
}

// simBreaker is a provider's breaker with the default settings of DESIGN §3
// (five failures, 30 s open, one probe), on a real fsm.Breaker machine. Like
// providers.Breaker, it ignores the outcome of a call admitted before its
// last transition (an older generation).
type simBreaker struct {
	g        *logGen
	name     string
	m        *fsm.Machine
	gen      int
	failures int
	openedAt time.Time
	probing  bool
}

const simOpenTimeout = 30 * time.Second

// admit asks for a call; an open breaker whose time is up fires probe.
func (b *simBreaker) admit() (ok bool, probeIn time.Duration, gen int) {
	switch b.m.State() {
	case fsm.Open:
		if wait := b.openedAt.Add(simOpenTimeout).Sub(b.g.clock.now()); wait > 0 {
			return false, wait, 0
		}
		b.fire(fsm.EventProbe, fsm.Detail{Reason: "open_timeout 30s passed"})
		b.probing = true
	case fsm.HalfOpen:
		if b.probing {
			return false, 0, 0
		}
		b.probing = true
	}
	return true, 0, b.gen
}

// done applies the outcome ("" for a success) of a call admitted in gen.
func (b *simBreaker) done(gen int, class providers.Class) {
	if gen != b.gen {
		return
	}
	switch b.m.State() {
	case fsm.Closed:
		if class == "" {
			b.failures = 0
			return
		}
		if b.failures++; b.failures >= 5 {
			b.fire(fsm.EventTrip, fsm.Detail{ErrorClass: string(class), Reason: fmt.Sprintf("%d consecutive failures", b.failures)})
			b.openedAt = b.g.clock.now()
		}
	case fsm.HalfOpen:
		if class == "" {
			b.fire(fsm.EventRecover, fsm.Detail{Reason: "1 probe succeeded"})
			return
		}
		b.fire(fsm.EventReopen, fsm.Detail{ErrorClass: string(class), Reason: "probe failed"})
		b.openedAt = b.g.clock.now()
	}
}

func (b *simBreaker) fire(e fsm.Event, d fsm.Detail) {
	d.Provider = b.name
	if _, err := b.m.Fire(context.Background(), e, d); err != nil {
		panic(err)
	}
	b.gen++
	b.failures, b.probing = 0, false
	t := &b.g.tally
	map[fsm.Event]map[string]int64{fsm.EventTrip: t.trips, fsm.EventProbe: t.probes, fsm.EventRecover: t.recovers, fsm.EventReopen: t.reopens}[e][b.name]++
}

// simConfig shapes a simulated traffic log.
type simConfig struct {
	Requests    int   // journeys to run
	Concurrency int   // in flight at once
	Seed        int64 // the random source
	// RestartEvery drains the traffic and logs a start line every so many
	// requests (0: never).
	RestartEvery int
	// UnrelatedEvery writes a line that is not the journal's every so many
	// requests (0: never).
	UnrelatedEvery int
	// TargetBytes, when set, runs until the output has that many bytes
	// (counted by the caller's writer) instead of Requests journeys.
	TargetBytes func() bool
}

// simulate runs cfg's traffic: every request is a small policy of its own
// (retry timeouts and server errors up to three times with backoff, fail
// over on rate limits and refused connections, skip targets whose breaker
// is open), against two providers that each fall into outages now and then,
// so that breakers trip, probe, recover and reopen.
func (g *logGen) simulate(cfg simConfig) {
	rng := rand.New(rand.NewSource(cfg.Seed))
	sim := &simulation{g: g, rng: rng}
	started := 0
	more := func() bool {
		if cfg.TargetBytes != nil {
			return !cfg.TargetBytes()
		}
		return started < cfg.Requests
	}
	launch := func() {
		started++
		sim.push(&simRequest{id: fmt.Sprintf("req_%s%08d", genRandomID(rng), started)}, g.clock.now().Add(time.Duration(rng.Intn(200))*time.Millisecond))
	}
	for i := 0; i < cfg.Concurrency && more(); i++ {
		launch()
	}
	for sim.q.Len() > 0 {
		it := heap.Pop(&sim.q).(*simItem)
		if it.at.After(g.clock.now()) {
			g.clock.t = it.at
		}
		if !sim.step(it.r) {
			continue
		}
		// That request is over: another one arrives, unless a restart is
		// due, which waits for the traffic to drain first.
		if cfg.UnrelatedEvery > 0 && started%cfg.UnrelatedEvery == 0 {
			g.unrelated(fmt.Sprintf("2026/11/26 00:12:00 http: TLS handshake error from 10.0.0.%d:51234: EOF", rng.Intn(255)))
		}
		if cfg.RestartEvery > 0 && started%cfg.RestartEvery == 0 && started > 0 {
			if sim.q.Len() > 0 {
				continue
			}
			g.start()
			for i := 0; i < cfg.Concurrency && more(); i++ {
				launch()
			}
			continue
		}
		if more() {
			launch()
		}
	}
}

func genRandomID(rng *rand.Rand) string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 16)
	for i := range b {
		b[i] = alphabet[rng.Intn(len(alphabet))]
	}
	return string(b)
}

type simulation struct {
	g   *logGen
	rng *rand.Rand
	q   simQueue
	seq int64
}

// simRequest is one request's journey in the simulation.
type simRequest struct {
	id      string
	d       *reqDriver
	targets []string
	idx     int
	tried   []int
	phase   simPhase
	class   providers.Class // the last failure's class
	gen     int             // the breaker generation the call was admitted in
}

type simPhase int

const (
	phaseArrive  simPhase = iota // received, then validated or rejected
	phaseRoute                   // pick the first admitting target and call it
	phaseOutcome                 // the call's outcome
	phaseResume                  // after a backoff: the same target, if it admits
)

func (s *simulation) push(r *simRequest, at time.Time) {
	s.seq++
	heap.Push(&s.q, &simItem{at: at, seq: s.seq, r: r})
}

// step runs a request's next step and reports whether it ended.
func (s *simulation) step(r *simRequest) bool {
	g, rng, now := s.g, s.rng, s.g.clock.now()
	switch r.phase {
	case phaseArrive:
		models := []string{"gpt-4", "gpt-4o", "claude-3-5-sonnet"}
		r.d = g.receive(r.id, models[rng.Intn(len(models))])
		if rng.Intn(25) == 0 {
			r.d.reject([]int{400, 404, 413, 415}[rng.Intn(4)], "invalid")
			return true
		}
		r.d.validate()
		r.targets = []string{"openai", "anthropic"}
		if rng.Intn(3) == 0 {
			r.targets = []string{"anthropic", "openai"}
		}
		r.tried = make([]int, len(r.targets))
		return s.route(r, 0, now)
	case phaseOutcome:
		return s.outcome(r, now)
	case phaseResume:
		return s.route(r, r.idx, now)
	}
	panic("unknown phase")
}

// route calls the first target at or after from whose breaker admits.
func (s *simulation) route(r *simRequest, from int, now time.Time) bool {
	for i := from; i < len(r.targets); i++ {
		if r.tried[i] >= 3 {
			continue
		}
		p := r.targets[i]
		ok, probeIn, gen := s.g.breakers[p].admit()
		if !ok {
			r.d.skipped(p, probeIn)
			continue
		}
		if i != r.idx || r.d.m.State() == fsm.Validated && i > 0 {
			if i > from || r.d.m.State() == fsm.Validated {
				r.d.failover(p, "", "breaker_open")
			} else {
				reason := string(r.class)
				switch r.class {
				case providers.ClassTimeout, providers.ClassServer, providers.ClassMalformed:
					reason = "cannot_retry"
					if r.tried[r.idx] >= 3 {
						reason = "attempts_exhausted"
					}
				}
				r.d.failover(p, r.class, reason)
			}
		}
		r.idx, r.gen = i, gen
		r.tried[i]++
		r.d.attempt(p, map[string]string{"openai": "gpt-4o", "anthropic": "claude-3-5-sonnet-20241022"}[p])
		r.phase = phaseOutcome
		s.push(r, now.Add(time.Duration(50+s.rng.Intn(400))*time.Millisecond))
		return false
	}
	if r.d.attempts == 0 {
		r.d.giveUp("", "", 503, "breakers_open")
	} else {
		r.d.giveUp(r.targets[r.idx], r.class, 502, "exhausted")
	}
	return true
}

// genOutage reports whether provider p is in one of its outages at now. Every
// 300 s each provider, at its own offset, is down for 20 s (its breaker
// trips, and the first probe finds it back) and later for 35 s (the first
// probe fails and the breaker reopens). The offsets keep the two from being
// open at once, most of the time.
func genOutage(p string, now time.Time) bool {
	off := map[string]time.Duration{"openai": 0, "anthropic": 60 * time.Second}[p]
	t := (now.Sub(genEpoch) + 300*time.Second - off) % (300 * time.Second)
	return t < 20*time.Second || t >= 150*time.Second && t < 185*time.Second
}

func (s *simulation) outcome(r *simRequest, now time.Time) bool {
	p := r.targets[r.idx]
	failRate := 0.04
	if genOutage(p, now) {
		failRate = 0.95
	}
	latency := time.Duration(50+s.rng.Intn(400)) * time.Millisecond
	if s.rng.Float64() >= failRate {
		s.g.breakers[p].done(r.gen, "")
		r.d.succeed(p)
		return true
	}
	classes := []providers.Class{providers.ClassTimeout, providers.ClassServer, providers.ClassServer, providers.ClassRateLimited, providers.ClassConnect, providers.ClassMalformed}
	if s.rng.Intn(200) == 0 {
		classes = []providers.Class{providers.ClassInvalid}
	}
	class := classes[s.rng.Intn(len(classes))]
	r.class = class
	status, retryAfter, msg := 0, time.Duration(0), ""
	switch class {
	case providers.ClassServer:
		status, msg = 502, "Bad gateway: upstream \"shard-7\" unavailable"
	case providers.ClassRateLimited:
		status, retryAfter, msg = 429, time.Second, "Rate limit reached for requests; retry after 1s"
	case providers.ClassInvalid:
		status, msg = 400, "max_tokens: must be ≤ 4096"
	case providers.ClassTimeout:
		latency = time.Second
	}
	r.d.failed(p, class, status, retryAfter, latency, msg)
	s.g.breakers[p].done(r.gen, class)
	switch class {
	case providers.ClassInvalid:
		r.d.giveUp(p, class, 400, "upstream_invalid")
		return true
	case providers.ClassTimeout, providers.ClassServer, providers.ClassMalformed:
		if r.tried[r.idx] < 3 && s.g.breakers[p].m.State() != fsm.Open {
			wait := 2 * time.Second << (r.tried[r.idx] - 1)
			r.d.retry(p, class, wait)
			r.phase = phaseResume
			s.push(r, now.Add(wait))
			return false
		}
	}
	if r.idx+1 < len(r.targets) {
		return s.route(r, r.idx+1, now)
	}
	status = 502
	if class == providers.ClassRateLimited {
		status = 429
	}
	r.d.giveUp(p, class, status, "exhausted")
	return true
}

// simQueue orders pending steps by time, then by arrival.
type simQueue []*simItem

type simItem struct {
	at  time.Time
	seq int64
	r   *simRequest
}

func (q simQueue) Len() int { return len(q) }
func (q simQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q simQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simQueue) Push(x any)   { *q = append(*q, x.(*simItem)) }
func (q *simQueue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}

package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/llm-gateway/gateway/fsm"
	"github.com/llm-gateway/gateway/providers"
)

// Engine drives request machines through the policy. It holds what all
// requests share: the providers, their breakers and retry budgets, the routes.
// It is safe for concurrent use.
type Engine struct {
	policy    Policy
	routes    providers.Routes
	providers map[string]providers.Provider
	breakers  map[string]*providers.Breaker
	budgets   map[string]*RetryBudget
	clock     providers.Clock
	journal   *Journal
	metrics   *Metrics
	rand      func() float64
	// checkers are the providers that can refuse a request without a call
	// (providers.Checker), by name.
	checkers map[string]providers.Checker
}

// EngineConfig is what NewEngine needs.
type EngineConfig struct {
	Policy    Policy
	Routes    providers.Routes
	Providers map[string]providers.Provider
	Breakers  map[string]*providers.Breaker
	Clock     providers.Clock
	Journal   *Journal
	// Metrics records attempts and retry-budget refusals; nil records
	// nothing.
	Metrics *Metrics
	// Rand is the jitter source; nil means math/rand.
	Rand func() float64
}

// NewEngine builds an engine; every provider gets its own retry budget.
func NewEngine(c EngineConfig) *Engine {
	if c.Clock == nil {
		c.Clock = providers.SystemClock
	}
	if c.Rand == nil {
		c.Rand = defaultRand
	}
	e := &Engine{
		policy:    c.Policy,
		routes:    c.Routes,
		providers: c.Providers,
		breakers:  c.Breakers,
		budgets:   make(map[string]*RetryBudget, len(c.Providers)),
		clock:     c.Clock,
		journal:   c.Journal,
		metrics:   c.Metrics,
		rand:      c.Rand,
	}
	for name, p := range c.Providers {
		e.budgets[name] = NewRetryBudget(c.Policy.RetryBudget, c.Clock.Now)
		if ch, ok := p.(providers.Checker); ok {
			if e.checkers == nil {
				e.checkers = map[string]providers.Checker{}
			}
			e.checkers[name] = ch
		}
	}
	return e
}

// Result is the outcome of one request.
type Result struct {
	Response *providers.ChatResponse // set on a plain success
	Stream   *StreamHandle           // set on a streamed success: its first chunk has arrived
	Provider string                  // the provider that answered, or was tried last
	Attempts int                     // provider calls made, all targets together
	Err      *apiError               // set on failure
	Gone     bool                    // the client went away; nothing can be answered
	End      time.Time               // when a plain success was known; zero otherwise
}

// run is the state of one request's journey.
type run struct {
	e        *Engine
	ctx      context.Context // done when the client goes away
	m        *fsm.Machine
	req      *providers.ChatRequest
	targets  []providers.Target
	deadline time.Time

	attempts    int   // calls made, all targets
	tried       []int // calls made per target
	lastErr     error
	lastIdx     int
	lastLatency time.Duration // of the last attempt
	lastEnd     time.Time     // when the last attempt ended
	lastStart   time.Time     // when the last attempt began

	// The current rate-limit round: which targets answered 429 since the
	// round began, and the longest Retry-After they asked for.
	roundLimited []bool
	roundWait    time.Duration

	// A stream that has begun: the upstream stream, its first chunk and the
	// breaker permit it holds until the stream ends.
	stream providers.Stream
	first  *providers.Chunk
	permit *providers.Permit

	// Targets passed over by admitFrom: why the last one was (skipReason,
	// for the failover that follows), whether one had its breaker open, and
	// the last refusal of a provider that cannot serve this request.
	skipReason     string
	breakerSkipped bool
	refusal        error

	// The retry budget's answer for attempt budgetAsked (tryRetry).
	budgetAsked int
	budgetOK    bool

	// Room for tried and roundLimited on routes of up to four targets,
	// saving two allocations per request.
	triedBuf   [4]int
	limitedBuf [4]bool
}

// Run takes a machine in state validated through attempts to a terminal state
// and returns the outcome. ctx is cancelled when the client goes away.
func (e *Engine) Run(ctx context.Context, m *fsm.Machine, req *providers.ChatRequest, targets []providers.Target, start time.Time) Result {
	r := runPool.Get().(*run)
	*r = run{
		e:        e,
		ctx:      ctx,
		m:        m,
		req:      req,
		targets:  targets,
		deadline: start.Add(e.policy.Deadline),
	}
	if len(targets) <= len(r.triedBuf) {
		r.tried, r.roundLimited = r.triedBuf[:len(targets)], r.limitedBuf[:len(targets)]
	} else {
		r.tried, r.roundLimited = make([]int, len(targets)), make([]bool, len(targets))
	}
	res := r.journey()
	if res.Stream == nil {
		// Nothing refers to r any more (a stream's handle does), and its
		// calls are over: it serves the next request.
		*r = run{}
		runPool.Put(r)
	}
	return res
}

// runPool keeps the runs of finished requests: a run is 400 bytes that
// every request would allocate, and take from memory that is no longer in
// the cache.
var runPool = sync.Pool{New: func() any { return new(run) }}

func (r *run) fire(ev fsm.Event, d fsm.Detail) { r.fireAt(ev, d, time.Time{}) }

// fireAt fires with the time the caller has just read (zero: now).
func (r *run) fireAt(ev fsm.Event, d fsm.Detail, at time.Time) {
	if _, err := r.m.FireAt(r.ctx, ev, d, at); err != nil {
		// The engine only fires what the table allows; anything else is a
		// bug that must not pass silently.
		panic(err)
	}
}

// journey is the policy of DESIGN §4 as a loop over attempts.
func (r *run) journey() Result {
	idx, permit, ok := r.admitFrom(0)
	if !ok {
		return r.giveUp(r.exhausted())
	}
	if idx > 0 {
		r.fire(fsm.EventFailover, fsm.Detail{Provider: r.targets[idx].Provider, Reason: r.skipReason})
	}
	for {
		resp, err := r.attempt(idx, permit)
		if err == nil {
			if r.stream != nil {
				return Result{Stream: &StreamHandle{r: r}, Provider: r.targets[idx].Provider, Attempts: r.attempts}
			}
			return r.succeed(idx, resp)
		}
		next, wait, stop := r.decide(idx, err, r.hasNext(idx))
		if stop == nil && next == stepFailover {
			nidx, p, ok := r.admitFrom(idx + 1)
			if ok {
				r.fire(fsm.EventFailover, fsm.Detail{Provider: r.targets[nidx].Provider, ErrorClass: string(providers.ClassOf(err)), Reason: failoverReason(err, r.tried[idx], r.e.policy.MaxAttempts)})
				idx, permit = nidx, p
				continue
			}
			// Every later target was passed over (its breaker open, or
			// it cannot serve the request): this one is the last after
			// all, so a rate limit waits for its round and a transient
			// failure for its backoff, as on a route that ends here.
			next, wait, stop = r.decide(idx, err, false)
		}
		if stop != nil {
			return r.giveUp(stop)
		}
		switch next {
		case stepRetry, stepRound:
			t := r.targets[idx]
			r.fire(fsm.EventRetry, fsm.Detail{Attempt: r.attempts, Provider: t.Provider, ErrorClass: string(providers.ClassOf(err)), Wait: wait})
			if err := r.e.clock.Sleep(r.ctx, wait); err != nil {
				return r.giveUp(clientGone())
			}
			from := idx
			if next == stepRound {
				from = 0
				r.newRound()
			}
			var nidx int
			nidx, permit, ok = r.admitFrom(from)
			if !ok {
				return r.giveUp(r.exhausted())
			}
			if nidx != from && next == stepRetry {
				// The target we meant to retry is no longer admitted.
				r.fire(fsm.EventFailover, fsm.Detail{Provider: r.targets[nidx].Provider, Reason: r.skipReason})
			}
			idx = nidx
		default: // stepFailover again, with no target left to take it
			return r.giveUp(r.exhausted())
		}
	}
}

type step int

const (
	stepRetry    step = iota // wait, then the same target again
	stepFailover             // the next admitting target, at once
	stepRound                // every target is rate limited: wait, then from the first
)

func failoverReason(err error, tried, max int) string {
	switch c := providers.ClassOf(err); c {
	case providers.ClassTimeout, providers.ClassServer, providers.ClassMalformed:
		if tried >= max {
			return "attempts_exhausted"
		}
		return "cannot_retry"
	default:
		return string(c)
	}
}

// attempt makes one call to target idx under its breaker permit.
func (r *run) attempt(idx int, permit *providers.Permit) (*providers.ChatResponse, error) {
	t := r.targets[idx]
	now := r.e.clock.Now()
	timeout := attemptTimeout(now, r.e.policy.AttemptTimeout, r.deadline)
	r.attempts++
	r.tried[idx]++
	r.lastIdx, r.lastStart = idx, now
	r.fireAt(fsm.EventAttempt, fsm.Detail{Attempt: r.attempts, Provider: t.Provider, Model: t.Model}, now)
	r.e.budgets[t.Provider].Call()
	var resp *providers.ChatResponse
	var err error
	if r.req.Stream {
		err = r.openStream(t, permit, r.firstTokenTimeout(now))
	} else {
		resp, err = r.call(t, permit, timeout)
	}
	r.lastEnd = r.e.clock.Now()
	latency := r.lastEnd.Sub(now)
	r.lastLatency = latency
	r.e.metrics.attempt(t.Provider, err, latency)
	if err != nil {
		r.lastErr = err
		r.e.journal.Failed(r.m.ID(), r.attempts, t.Provider, err, latency)
	}
	return resp, err
}

// call runs the provider call and reports its outcome to the breaker on every
// path, a panic included.
func (r *run) call(t providers.Target, permit *providers.Permit, timeout time.Duration) (resp *providers.ChatResponse, err error) {
	defer permit.Release()
	resp, err = r.e.providers[t.Provider].Complete(r.ctx, r.req, providers.Call{Model: t.Model, RequestID: r.m.ID(), Timeout: timeout})
	permit.Done(r.breakerOutcome(err, timeout, r.e.policy.AttemptTimeout))
	return resp, err
}

// breakerOutcome is what the breaker should count for err: a timeout that
// the request's deadline (not the provider) cut short, or a call abandoned
// because the client left, says nothing about the provider's health.
func (r *run) breakerOutcome(err error, timeout, configured time.Duration) error {
	if r.ctx.Err() != nil || (providers.ClassOf(err) == providers.ClassTimeout && timeout < configured) {
		return providers.ClassCanceled
	}
	return err
}

// decide applies DESIGN §4 to a failed attempt on target idx. hasNext says
// whether a later target remains to fail over to.
func (r *run) decide(idx int, err error, hasNext bool) (next step, wait time.Duration, stop *apiError) {
	if r.ctx.Err() != nil {
		return 0, 0, clientGone()
	}
	now := r.e.clock.Now()
	class := providers.ClassOf(err)
	if class == providers.ClassCanceled || !now.Before(r.deadline) {
		return 0, 0, r.deadlineReached()
	}
	t := r.targets[idx]
	canRetry := func(wait time.Duration) bool {
		return r.tried[idx] < r.e.policy.MaxAttempts &&
			fits(now, wait, r.deadline) &&
			r.e.breakers[t.Provider].State() != fsm.Open &&
			r.tryRetry(t.Provider)
	}
	backoff := retryWait(r.e.policy.Backoff.Wait(r.tried[idx], r.e.rand), providers.RetryAfterOf(err))

	switch class {
	case providers.ClassInvalid:
		return 0, 0, upstreamInvalid(err)
	case providers.ClassTimeout, providers.ClassServer, providers.ClassMalformed:
		if canRetry(backoff) {
			return stepRetry, backoff, nil
		}
		if hasNext {
			return stepFailover, 0, nil
		}
		if r.tried[idx] < r.e.policy.MaxAttempts && !fits(now, backoff, r.deadline) {
			return 0, 0, r.deadlineReached()
		}
		return 0, 0, r.exhausted()
	case providers.ClassRateLimited:
		r.roundLimited[idx] = true
		if ra := providers.RetryAfterOf(err); ra > r.roundWait {
			r.roundWait = ra
		}
		if hasNext {
			return stepFailover, 0, nil
		}
		if r.everyTriedLimited() {
			w := r.roundWait
			if w == 0 {
				w = time.Second
			}
			first := r.targets[0].Provider
			if fits(now, w, r.deadline) && r.tried[0] < r.e.policy.MaxAttempts && r.tryRetry(first) {
				return stepRound, w, nil
			}
			return 0, 0, rateLimited(w)
		}
		return 0, 0, r.exhausted()
	case providers.ClassConnect, providers.ClassOverloaded:
		if hasNext {
			return stepFailover, 0, nil
		}
		// The last target: a transient failure is still worth a wait.
		if canRetry(backoff) {
			return stepRetry, backoff, nil
		}
		return 0, 0, r.exhausted()
	default: // auth, and anything unforeseen
		if hasNext {
			return stepFailover, 0, nil
		}
		return 0, 0, r.exhausted()
	}
}

// tryRetry takes a retry from the provider's budget, counting a refusal.
func (r *run) tryRetry(provider string) bool {
	// Asked once per failed attempt: decide may run twice for one (when
	// the failover it chose finds no target), and must neither spend the
	// budget twice nor count or log its refusal twice.
	if r.budgetAsked == r.attempts {
		return r.budgetOK
	}
	r.budgetAsked, r.budgetOK = r.attempts, r.e.budgets[provider].TryRetry()
	if !r.budgetOK {
		r.e.metrics.budgetExhausted(provider)
		// Said in the journal too: without it a give_up after fewer
		// attempts than max_attempts reads like a policy bug.
		r.e.journal.Message(levelWarn, "retry_budget_exhausted", "request_id", r.m.ID(), "provider", provider,
			"attempt", strconv.Itoa(r.attempts))
	}
	return r.budgetOK
}

// hasNext reports whether a target after idx exists (its breaker is asked
// only when the engine moves there).
func (r *run) hasNext(idx int) bool { return idx+1 < len(r.targets) }

func (r *run) everyTriedLimited() bool {
	for i, n := range r.tried {
		if n > 0 && !r.roundLimited[i] {
			return false
		}
	}
	return true
}

func (r *run) newRound() {
	for i := range r.roundLimited {
		r.roundLimited[i] = false
	}
	r.roundWait = 0
}

// admitFrom returns the first target at or after from whose breaker admits a
// call, logging a skipped line for each one passed over.
func (r *run) admitFrom(from int) (int, *providers.Permit, bool) {
	for i := from; i < len(r.targets); i++ {
		t := r.targets[i]
		if r.tried[i] >= r.e.policy.MaxAttempts {
			continue
		}
		if c := r.e.checkers[t.Provider]; c != nil {
			if err := c.Check(r.req); err != nil {
				// This provider cannot serve the request (a translation
				// refuses it): passed over without a call or a permit.
				r.skipReason, r.refusal = "unsupported", err
				r.e.journal.Unsupported(r.m.ID(), t.Provider, err)
				continue
			}
		}
		p, err := r.e.breakers[t.Provider].Admit()
		if err == nil {
			return i, p, true
		}
		r.skipReason, r.breakerSkipped = "breaker_open", true
		var oe *providers.OpenError
		state, probeIn := fsm.Open, time.Duration(0)
		if errors.As(err, &oe) {
			state, probeIn = oe.State, oe.ProbeAt.Sub(r.e.clock.Now())
		}
		r.e.journal.Skipped(r.m.ID(), t.Provider, state, probeIn)
	}
	return 0, nil, false
}

func (r *run) succeed(idx int, resp *providers.ChatResponse) Result {
	t := r.targets[idx]
	r.fireAt(fsm.EventSucceed, fsm.Detail{Attempt: r.attempts, Provider: t.Provider, Status: 200, Latency: r.lastLatency}, r.lastEnd)
	return Result{Response: resp, Provider: t.Provider, Attempts: r.attempts, End: r.lastEnd}
}

func (r *run) giveUp(ae *apiError) Result {
	d := fsm.Detail{Attempt: r.attempts, Status: ae.Status, Reason: ae.Reason}
	if r.attempts > 0 {
		d.Provider = r.targets[r.lastIdx].Provider
	}
	if r.lastErr != nil {
		d.ErrorClass = string(providers.ClassOf(r.lastErr))
	}
	r.fire(fsm.EventGiveUp, d)
	res := Result{Attempts: r.attempts, Err: ae, Gone: ae.Status == statusClientGone}
	if r.attempts > 0 {
		res.Provider = d.Provider
	}
	return res
}

// statusClientGone is logged when the client left before its answer (the
// nginx convention); it is never sent.
const statusClientGone = 499

func clientGone() *apiError {
	return &apiError{Status: statusClientGone, Type: typeInvalidRequest, Code: "client_closed_request",
		Message: "the client closed the connection", Reason: "client_gone"}
}

func (r *run) deadlineReached() *apiError {
	return &apiError{Status: 504, Type: typeTimeout, Code: "deadline_exceeded", Retried: true,
		Message: fmt.Sprintf("the request's deadline of %s passed after %d attempt(s)%s", r.e.policy.Deadline, r.attempts, r.lastErrText()),
		Reason:  "deadline"}
}

func rateLimited(wait time.Duration) *apiError {
	return &apiError{Status: 429, Type: typeRateLimit, Code: "rate_limit_exceeded", RetryAfter: wait, Retried: true,
		Message: fmt.Sprintf("every provider that can serve this request is rate limited; retry after %ds", retryAfterSeconds(wait)),
		Reason:  "rate_limited"}
}

// unavailable is the answer when no target's breaker admits a call at all.
func (r *run) unavailable() *apiError {
	wait := time.Duration(0)
	now := r.e.clock.Now()
	for _, t := range r.targets {
		probe := r.e.breakers[t.Provider].Snapshot().NextProbeAt
		if d := probe.Sub(now); !probe.IsZero() && (wait == 0 || d < wait) {
			wait = d
		}
	}
	if wait <= 0 {
		wait = time.Second
	}
	return &apiError{Status: 503, Type: typeServer, Code: "providers_unavailable", RetryAfter: wait,
		Message: fmt.Sprintf("every provider for model %q is unavailable (circuit breaker open); retry after %ds", r.req.Model, retryAfterSeconds(wait)),
		Reason:  "breakers_open"}
}

// exhausted is the answer when attempts and targets ran out.
func (r *run) exhausted() *apiError {
	if r.attempts == 0 {
		if r.refusal != nil && !r.breakerSkipped {
			// No target can serve this request as it is: the refusal
			// says which parameter.
			ae := upstreamInvalid(r.refusal)
			ae.Reason = "unsupported"
			return ae
		}
		return r.unavailable()
	}
	if providers.ClassOf(r.lastErr) == providers.ClassRateLimited && r.everyTriedLimited() {
		w := r.roundWait
		if w == 0 {
			w = time.Second
		}
		return rateLimited(w)
	}
	return &apiError{Status: 502, Type: typeServer, Code: "upstream_error", Retried: true,
		Message: fmt.Sprintf("the providers failed after %d attempt(s)%s", r.attempts, r.lastErrText()),
		Reason:  "exhausted"}
}

func (r *run) lastErrText() string {
	if r.lastErr == nil {
		return ""
	}
	var pe *providers.Error
	if errors.As(r.lastErr, &pe) {
		msg := fmt.Sprintf("; last error from %s: %s", pe.Provider, pe.Class)
		if pe.Message != "" {
			msg += ": " + truncate(pe.Message, 300)
		}
		return msg
	}
	return "; last error: " + string(providers.ClassOf(r.lastErr))
}

// upstreamInvalid passes a provider's 4xx back to the client with its message:
// the request itself is wrong, and no other target would take it either.
func upstreamInvalid(err error) *apiError {
	ae := &apiError{Status: 400, Type: typeInvalidRequest, Message: "the provider rejected the request", Reason: "upstream_invalid"}
	var pe *providers.Error
	if errors.As(err, &pe) {
		switch pe.Status {
		case 400, 404, 413, 422:
			ae.Status = pe.Status
		}
		if pe.Message != "" {
			ae.Message = pe.Message
		}
		ae.Code, ae.Param = pe.Code, pe.Param
	}
	return ae
}

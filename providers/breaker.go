package providers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/llm-gateway/gateway/fsm"
)

// ErrOpen is matched, with errors.Is, by every *OpenError: the breaker refused
// the call and the provider was not called.
var ErrOpen = errors.New("providers: circuit breaker is open")

// OpenError is Admit's refusal. State is fsm.Open, or fsm.HalfOpen when every
// probe slot is taken; both count as open for the pipeline (DESIGN §3, the 503
// rule).
type OpenError struct {
	Provider string
	State    fsm.State
	// ProbeAt is when the breaker admits its next probe: the end of
	// open_timeout for an open breaker, or the refusal time itself for a
	// half-open one (a slot frees as soon as a probe returns). The 503
	// Retry-After is derived from it.
	ProbeAt time.Time
}

func (e *OpenError) Error() string {
	if e.State == fsm.HalfOpen {
		return fmt.Sprintf("%s: circuit breaker is half-open and every probe slot is busy", e.Provider)
	}
	return fmt.Sprintf("%s: circuit breaker is open until %s", e.Provider, e.ProbeAt.UTC().Format(time.RFC3339Nano))
}

// Is makes errors.Is(err, ErrOpen) true.
func (e *OpenError) Is(target error) bool { return target == ErrOpen }

// RetryAfter is how long after now the next probe is admitted; never negative.
func (e *OpenError) RetryAfter(now time.Time) time.Duration {
	return max(e.ProbeAt.Sub(now), 0)
}

// Breaker is one provider's circuit breaker (DESIGN §3), shared by every
// request to that provider. It is safe for concurrent use.
//
// Its state lives in an fsm.Machine of fsm.Breaker; setState is the only
// place that state changes, and every change is one fsm transition reported
// to the hook once, in order. Like sony/gobreaker it keeps a generation
// counter, bumped by every transition, so an outcome that comes back after
// the state moved on changes nothing. Unlike gobreaker it reads an injected
// Clock, and moves from open to half-open only when a call arrives: the
// gateway never calls a provider on its own.
//
// Use:
//
//	p, err := b.Admit()
//	if err != nil {
//		return err // an *OpenError: skip this provider
//	}
//	defer p.Release() // frees a half-open probe slot even if the call panics
//	resp, err := call()
//	p.Done(err) // the outcome; Release afterwards does nothing
type Breaker struct {
	provider string
	settings BreakerSettings
	clock    Clock
	machine  *fsm.Machine // the state's one source of truth; fired only by setState

	// mu guards every field below. setState runs with it held, so the
	// machine's transitions, and their records, follow the order in which
	// outcomes were applied.
	mu             sync.Mutex
	state          fsm.State // mirrors the machine, set only by setState, so Admit need not take the machine's lock
	generation     uint64    // bumped by every transition; permits of older generations are stale
	failures       int       // consecutive failures in closed
	probes         int       // probes of the current half-open generation still in flight
	probeSuccesses int       // successful probes of the current half-open generation
	openedAt       time.Time // when the breaker last opened (trip or reopen)
	lastError      Class
	lastErrorAt    time.Time
	totals         breakerTotals
}

type breakerTotals struct {
	successes, failures, neutral, stale, rejections, trips, reopens uint64
}

// NewBreaker returns a closed breaker for provider. Zero or negative fields
// of s take their defaults (Settings.Validate rejects negative ones before
// this). clock nil means SystemClock; hook, which may be nil, receives every
// transition with ID and Detail.Provider set to provider. The hook runs with
// the breaker's lock held: it must not call the breaker.
func NewBreaker(provider string, s BreakerSettings, clock Clock, hook fsm.Hook) *Breaker {
	if clock == nil {
		clock = SystemClock
	}
	return &Breaker{
		provider: provider,
		settings: s.positive(),
		clock:    clock,
		machine:  fsm.Breaker.New(provider, hook, clock.Now),
		state:    fsm.Breaker.Initial,
	}
}

// Provider returns the name of the provider the breaker guards.
func (b *Breaker) Provider() string { return b.provider }

// Settings returns the breaker's settings, defaults filled in.
func (b *Breaker) Settings() BreakerSettings { return b.settings }

// Permit is one admitted call. Exactly one outcome is applied per permit:
// the first call of Done or Release; later calls do nothing. A nil *Permit
// (what Admit returns with an error) accepts both calls, so a deferred
// Release is safe before the error check.
type Permit struct {
	b    *Breaker
	gen  uint64 // the breaker's generation at Admit
	done bool   // guarded by b.mu
}

// Admit asks to make one call. In closed it always admits. In open it
// refuses with an *OpenError until open_timeout has passed since the breaker
// opened; the first call at or after that moment fires the probe transition
// and is admitted as a probe. In half-open it admits up to half_open_max
// probes at a time and refuses the rest with an *OpenError.
func (b *Breaker) Admit() (p *Permit, err error) {
	// Small enough to inline, so a caller that keeps the permit local gets
	// it on its stack.
	p = &Permit{b: b}
	if p.gen, err = b.admit(); err != nil {
		p = nil
	}
	return
}

// admit returns the generation of the admitted call.
func (b *Breaker) admit() (uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case fsm.Open:
		now := b.clock.Now()
		probeAt := b.openedAt.Add(b.settings.OpenTimeout)
		if now.Before(probeAt) {
			b.totals.rejections++
			return 0, &OpenError{Provider: b.provider, State: fsm.Open, ProbeAt: probeAt}
		}
		b.setState(fsm.EventProbe, fsm.Detail{Reason: fmt.Sprintf("open_timeout %s passed", b.settings.OpenTimeout)})
		b.probes++
	case fsm.HalfOpen:
		if b.probes >= b.settings.HalfOpenMax {
			b.totals.rejections++
			return 0, &OpenError{Provider: b.provider, State: fsm.HalfOpen, ProbeAt: b.clock.Now()}
		}
		b.probes++
	}
	return b.generation, nil
}

// Done applies the call's outcome: nil is a success; otherwise ClassOf(err)
// decides. A class that is a breaker failure (Class.BreakerFailure) counts
// against the provider; invalid requests and cancellations are neutral: they
// change no count or state, but a half-open probe still gives back its slot.
// An outcome from an older generation (the breaker changed state since Admit)
// changes nothing. Only the first call per permit counts.
func (p *Permit) Done(err error) {
	if p != nil {
		p.b.done(p, err)
	}
}

// Release applies a neutral outcome unless Done was already called. Defer it
// right after Admit so that a panicking or forgetful caller still frees its
// half-open slot:
//
//	p, err := b.Admit()
//	...
//	defer p.Release()
func (p *Permit) Release() { p.Done(ClassCanceled) }

func (b *Breaker) done(p *Permit, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.done {
		return
	}
	p.done = true
	if p.gen != b.generation {
		// The slot bookkeeping of that generation was reset by the
		// transition that ended it, so a stale probe has nothing to give
		// back.
		b.totals.stale++
		return
	}
	if b.state == fsm.HalfOpen {
		b.probes--
	}
	if err == nil {
		b.onSuccess()
		return
	}
	class := ClassOf(err)
	if !class.BreakerFailure() {
		b.totals.neutral++
		return
	}
	b.onFailure(class)
}

func (b *Breaker) onSuccess() {
	b.totals.successes++
	switch b.state {
	case fsm.Closed:
		b.failures = 0
	case fsm.HalfOpen:
		b.probeSuccesses++
		if b.probeSuccesses >= b.settings.HalfOpenSuccesses {
			reason := "1 probe succeeded"
			if b.probeSuccesses > 1 {
				reason = fmt.Sprintf("%d probes succeeded", b.probeSuccesses)
			}
			b.setState(fsm.EventRecover, fsm.Detail{Reason: reason})
		}
	}
}

func (b *Breaker) onFailure(class Class) {
	b.totals.failures++
	b.lastError = class
	b.lastErrorAt = b.clock.Now()
	switch b.state {
	case fsm.Closed:
		b.failures++
		if b.failures >= b.settings.FailureThreshold {
			b.setState(fsm.EventTrip, fsm.Detail{
				ErrorClass: string(class),
				Reason:     fmt.Sprintf("%d consecutive failures", b.failures),
			})
		}
	case fsm.HalfOpen:
		b.setState(fsm.EventReopen, fsm.Detail{ErrorClass: string(class), Reason: "probe failed"})
	}
}

// setState fires event e on the machine; it is the only place the breaker's
// state changes. It starts a new generation: the counts of the old state are
// reset, and permits admitted before it become stale. b.mu must be held.
func (b *Breaker) setState(e fsm.Event, d fsm.Detail) {
	d.Provider = b.provider
	t, err := b.machine.Fire(context.Background(), e, d)
	if err != nil {
		// Every call site fires only the event its state allows, so this
		// is a bug in this file, and carrying on would desynchronise the
		// breaker from its machine.
		panic(fmt.Sprintf("providers: breaker %s: %v", b.provider, err))
	}
	b.state = t.To
	b.generation++
	b.failures, b.probes, b.probeSuccesses = 0, 0, 0
	switch e {
	case fsm.EventTrip:
		b.totals.trips++
		b.openedAt = t.Time
	case fsm.EventReopen:
		b.totals.reopens++
		b.openedAt = t.Time
	}
}

// State returns the current state. An open breaker whose open_timeout has
// passed still reads open until a call arrives and becomes its probe.
func (b *Breaker) State() fsm.State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// BreakerStatus is a breaker's state and counts at one moment, for
// /admin/breakers and /metrics.
type BreakerStatus struct {
	Provider            string    `json:"provider"`
	State               fsm.State `json:"state"`
	ConsecutiveFailures int       `json:"consecutive_failures"` // in closed
	InFlightProbes      int       `json:"in_flight_probes"`     // in half-open
	LastError           string    `json:"last_error,omitempty"` // the class of the last failure counted
	LastErrorAt         time.Time `json:"last_error_at,omitzero"`
	OpenedAt            time.Time `json:"opened_at,omitzero"`     // when it last opened; zero if never
	NextProbeAt         time.Time `json:"next_probe_at,omitzero"` // zero unless open

	// Totals since start. Every admitted call ends in exactly one of
	// Successes, Failures, Neutral or Stale (once its permit is done).
	Successes  uint64 `json:"successes"`
	Failures   uint64 `json:"failures"`   // breaker failures counted
	Neutral    uint64 `json:"neutral"`    // invalid requests and cancellations
	Stale      uint64 `json:"stale"`      // outcomes ignored: the breaker had moved on
	Rejections uint64 `json:"rejections"` // calls refused by Admit
	Trips      uint64 `json:"trips"`      // closed → open
	Reopens    uint64 `json:"reopens"`    // half_open → open
}

// Snapshot returns the breaker's status.
func (b *Breaker) Snapshot() BreakerStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := BreakerStatus{
		Provider:            b.provider,
		State:               b.state,
		ConsecutiveFailures: b.failures,
		InFlightProbes:      b.probes,
		LastError:           string(b.lastError),
		LastErrorAt:         b.lastErrorAt,
		OpenedAt:            b.openedAt,
		Successes:           b.totals.successes,
		Failures:            b.totals.failures,
		Neutral:             b.totals.neutral,
		Stale:               b.totals.stale,
		Rejections:          b.totals.rejections,
		Trips:               b.totals.trips,
		Reopens:             b.totals.reopens,
	}
	if b.state == fsm.Open {
		s.NextProbeAt = b.openedAt.Add(b.settings.OpenTimeout)
	}
	return s
}

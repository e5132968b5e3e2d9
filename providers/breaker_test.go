package providers

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm-gateway/gateway/fsm"
)

var breakerT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// Outcomes of a provider call, as Permit.Done sees them.
var (
	outcomeServer      = &Error{Class: ClassServer, Provider: "openai", Status: 500}
	outcomeTimeout     = &Error{Class: ClassTimeout, Provider: "openai"}
	outcomeRateLimited = &Error{Class: ClassRateLimited, Provider: "openai", Status: 429, RetryAfter: time.Second}
	outcomeInvalid     = &Error{Class: ClassInvalid, Provider: "openai", Status: 400}
	outcomeCanceled    = &Error{Class: ClassCanceled, Provider: "openai"}
)

// transitionLog keeps every record the breaker's hook sees.
type transitionLog struct {
	mu  sync.Mutex
	got []fsm.Transition
}

func (r *transitionLog) hook(t fsm.Transition) {
	r.mu.Lock()
	r.got = append(r.got, t)
	r.mu.Unlock()
}

func (r *transitionLog) events() []fsm.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := []fsm.Event{}
	for _, t := range r.got {
		evs = append(evs, t.Event)
	}
	return evs
}

func newTestBreaker(s BreakerSettings) (*Breaker, *FakeClock, *transitionLog) {
	clock := NewFakeClock(breakerT0)
	rec := &transitionLog{}
	return NewBreaker("openai", s, clock, rec.hook), clock, rec
}

// call makes one call through the breaker with the given outcome and returns
// Admit's error.
func breakerCall(t *testing.T, b *Breaker, outcome error) error {
	t.Helper()
	p, err := b.Admit()
	if err != nil {
		if p != nil {
			t.Fatalf("Admit returned a permit with error %v", err)
		}
		return err
	}
	p.Done(outcome)
	return nil
}

func mustBreakerCall(t *testing.T, b *Breaker, outcome error) {
	t.Helper()
	if err := breakerCall(t, b, outcome); err != nil {
		t.Fatalf("call refused: %v", err)
	}
}

func mustAdmit(t *testing.T, b *Breaker) *Permit {
	t.Helper()
	p, err := b.Admit()
	if err != nil {
		t.Fatalf("Admit: %v", err)
	}
	return p
}

func wantBreakerState(t *testing.T, b *Breaker, want fsm.State) {
	t.Helper()
	if got := b.State(); got != want {
		t.Fatalf("state %s, want %s", got, want)
	}
}

func wantBreakerEvents(t *testing.T, rec *transitionLog, want ...fsm.Event) {
	t.Helper()
	got := rec.events()
	if fmt.Sprint(got) != fmt.Sprint(append([]fsm.Event{}, want...)) {
		t.Fatalf("transitions %v, want %v", got, want)
	}
}

// openBreaker trips a fresh breaker with server errors.
func openBreaker(t *testing.T, s BreakerSettings) (*Breaker, *FakeClock, *transitionLog) {
	t.Helper()
	b, clock, rec := newTestBreaker(s)
	for range b.Settings().FailureThreshold {
		mustBreakerCall(t, b, outcomeServer)
	}
	wantBreakerState(t, b, fsm.Open)
	return b, clock, rec
}

// halfOpenBreaker trips a fresh breaker and lets its open_timeout pass; the
// next Admit is the first probe.
func halfOpenBreaker(t *testing.T, s BreakerSettings) (*Breaker, *FakeClock, *transitionLog) {
	t.Helper()
	b, clock, rec := openBreaker(t, s)
	clock.Advance(b.Settings().OpenTimeout)
	return b, clock, rec
}

func TestBreakerTripsAtTheThresholdAndNotBefore(t *testing.T) {
	for _, tc := range []struct {
		name      string
		threshold int
		failure   error
	}{
		{"threshold 1", 1, outcomeServer},
		{"threshold 2", 2, outcomeTimeout},
		{"default threshold", 0, outcomeServer},
		{"rate limits count", 3, outcomeRateLimited},
		{"deadline counts as timeout", 3, context.DeadlineExceeded},
		{"unclassified error counts as server", 3, errors.New("boom")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _, rec := newTestBreaker(BreakerSettings{FailureThreshold: tc.threshold})
			n := b.Settings().FailureThreshold
			for i := 1; i < n; i++ {
				mustBreakerCall(t, b, tc.failure)
				wantBreakerState(t, b, fsm.Closed)
				if got := b.Snapshot().ConsecutiveFailures; got != i {
					t.Fatalf("after %d failures the streak is %d", i, got)
				}
			}
			wantBreakerEvents(t, rec)
			mustBreakerCall(t, b, tc.failure)
			wantBreakerState(t, b, fsm.Open)
			wantBreakerEvents(t, rec, fsm.EventTrip)
		})
	}
}

func TestBreakerSuccessResetsTheStreak(t *testing.T) {
	b, _, rec := newTestBreaker(BreakerSettings{FailureThreshold: 3})
	for range 5 {
		mustBreakerCall(t, b, outcomeServer)
		mustBreakerCall(t, b, outcomeServer)
		mustBreakerCall(t, b, nil)
		if got := b.Snapshot().ConsecutiveFailures; got != 0 {
			t.Fatalf("streak %d after a success", got)
		}
	}
	wantBreakerState(t, b, fsm.Closed)
	wantBreakerEvents(t, rec)
	for range 3 {
		mustBreakerCall(t, b, outcomeServer)
	}
	wantBreakerState(t, b, fsm.Open)
}

func TestBreakerOpenRejectsWithoutCalling(t *testing.T) {
	b, clock, _ := openBreaker(t, BreakerSettings{FailureThreshold: 2, OpenTimeout: 30 * time.Second})
	opened := clock.Now()
	calls := 0
	for i := range 10 {
		clock.Advance(time.Second)
		p, err := b.Admit()
		if err == nil {
			calls++
			p.Done(nil)
		}
		var oe *OpenError
		if !errors.As(err, &oe) || !errors.Is(err, ErrOpen) {
			t.Fatalf("call %d: Admit = %v, want an *OpenError matching ErrOpen", i, err)
		}
		if p != nil {
			t.Fatalf("call %d: a permit came with the error", i)
		}
		want := OpenError{Provider: "openai", State: fsm.Open, ProbeAt: opened.Add(30 * time.Second)}
		if *oe != want {
			t.Fatalf("call %d: %+v, want %+v", i, *oe, want)
		}
		if got, want := oe.RetryAfter(clock.Now()), 30*time.Second-time.Duration(i+1)*time.Second; got != want {
			t.Fatalf("call %d: RetryAfter %s, want %s", i, got, want)
		}
	}
	if calls != 0 {
		t.Fatalf("an open breaker let %d calls through", calls)
	}
	if got := b.Snapshot().Rejections; got != 10 {
		t.Fatalf("Rejections %d, want 10", got)
	}
}

func TestBreakerProbesExactlyAtTheOpenTimeout(t *testing.T) {
	for _, tc := range []struct {
		name             string
		after            time.Duration // since the breaker opened
		wantBreakerState fsm.State     // after Admit
		admitted         bool
	}{
		{"one nanosecond before", 10*time.Second - time.Nanosecond, fsm.Open, false},
		{"exactly at", 10 * time.Second, fsm.HalfOpen, true},
		{"long after", time.Hour, fsm.HalfOpen, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, clock, rec := openBreaker(t, BreakerSettings{FailureThreshold: 1, OpenTimeout: 10 * time.Second})
			clock.Advance(tc.after)
			p, err := b.Admit()
			if (err == nil) != tc.admitted {
				t.Fatalf("Admit error %v, want admitted=%v", err, tc.admitted)
			}
			wantBreakerState(t, b, tc.wantBreakerState)
			if tc.admitted {
				wantBreakerEvents(t, rec, fsm.EventTrip, fsm.EventProbe)
				if got := b.Snapshot().InFlightProbes; got != 1 {
					t.Fatalf("InFlightProbes %d, want 1: the call that fired the probe is the probe", got)
				}
				p.Done(nil)
				wantBreakerState(t, b, fsm.Closed)
			} else {
				wantBreakerEvents(t, rec, fsm.EventTrip)
			}
		})
	}
}

func TestBreakerHalfOpenAdmitsAtMostHalfOpenMaxProbes(t *testing.T) {
	for _, limit := range []int{1, 3} {
		t.Run(fmt.Sprint("half_open_max ", limit), func(t *testing.T) {
			b, clock, _ := halfOpenBreaker(t, BreakerSettings{FailureThreshold: 1, OpenTimeout: time.Second, HalfOpenMax: limit, HalfOpenSuccesses: 10})
			var probes []*Permit
			for range limit {
				probes = append(probes, mustAdmit(t, b))
			}
			for i := range 3 {
				clock.Advance(time.Millisecond)
				_, err := b.Admit()
				var oe *OpenError
				if !errors.As(err, &oe) || !errors.Is(err, ErrOpen) {
					t.Fatalf("extra caller %d: %v, want an *OpenError", i, err)
				}
				if want := (OpenError{Provider: "openai", State: fsm.HalfOpen, ProbeAt: clock.Now()}); *oe != want {
					t.Fatalf("extra caller %d: %+v, want %+v", i, *oe, want)
				}
			}
			st := b.Snapshot()
			if st.InFlightProbes != limit || st.Rejections != 3 || st.State != fsm.HalfOpen {
				t.Fatalf("snapshot %+v, want %d probes in flight and 3 rejections", st, limit)
			}
			// A probe that returns frees its slot for the next caller.
			probes[0].Done(nil)
			probes[0] = mustAdmit(t, b)
			if _, err := b.Admit(); !errors.Is(err, ErrOpen) {
				t.Fatalf("slots over-released: %v", err)
			}
		})
	}
}

func TestBreakerClosesWhenProbeSucceeds(t *testing.T) {
	b, _, rec := halfOpenBreaker(t, BreakerSettings{FailureThreshold: 2})
	mustBreakerCall(t, b, nil)
	wantBreakerState(t, b, fsm.Closed)
	wantBreakerEvents(t, rec, fsm.EventTrip, fsm.EventProbe, fsm.EventRecover)
	if st := b.Snapshot(); st.ConsecutiveFailures != 0 || st.InFlightProbes != 0 || !st.NextProbeAt.IsZero() {
		t.Fatalf("after recovery: %+v", st)
	}
	// The streak starts again from zero: one failure does not trip.
	mustBreakerCall(t, b, outcomeServer)
	wantBreakerState(t, b, fsm.Closed)
}

func TestBreakerReopensWhenProbeFails(t *testing.T) {
	for _, failure := range []error{outcomeServer, outcomeTimeout, outcomeRateLimited, &Error{Class: ClassAuth, Status: 401}} {
		t.Run(string(ClassOf(failure)), func(t *testing.T) {
			b, clock, rec := halfOpenBreaker(t, BreakerSettings{FailureThreshold: 1, OpenTimeout: 10 * time.Second})
			p := mustAdmit(t, b)
			clock.Advance(3 * time.Second) // the probe takes a while
			reopened := clock.Now()
			p.Done(failure)
			wantBreakerState(t, b, fsm.Open)
			wantBreakerEvents(t, rec, fsm.EventTrip, fsm.EventProbe, fsm.EventReopen)
			st := b.Snapshot()
			if !st.OpenedAt.Equal(reopened) || !st.NextProbeAt.Equal(reopened.Add(10*time.Second)) {
				t.Fatalf("opened %s, next probe %s; want the timer restarted at %s", st.OpenedAt, st.NextProbeAt, reopened)
			}
			// The timer runs from the reopen, not from the first trip.
			clock.Advance(10*time.Second - time.Nanosecond)
			if _, err := b.Admit(); !errors.Is(err, ErrOpen) {
				t.Fatalf("admitted before the restarted timer ran out: %v", err)
			}
			clock.Advance(time.Nanosecond)
			mustAdmit(t, b)
			wantBreakerState(t, b, fsm.HalfOpen)
		})
	}
}

func TestBreakerNeedsHalfOpenSuccessesProbesToClose(t *testing.T) {
	b, _, rec := halfOpenBreaker(t, BreakerSettings{FailureThreshold: 1, HalfOpenSuccesses: 2})
	mustBreakerCall(t, b, nil)
	wantBreakerState(t, b, fsm.HalfOpen)
	mustBreakerCall(t, b, outcomeInvalid) // neutral: neither a success nor a failure
	wantBreakerState(t, b, fsm.HalfOpen)
	mustBreakerCall(t, b, nil)
	wantBreakerState(t, b, fsm.Closed)
	wantBreakerEvents(t, rec, fsm.EventTrip, fsm.EventProbe, fsm.EventRecover)
	if got := rec.got[2].Reason; got != "2 probes succeeded" {
		t.Fatalf("recover reason %q", got)
	}
}

func TestBreakerNeutralOutcomesAreNeutralInEveryState(t *testing.T) {
	neutral := []error{outcomeInvalid, outcomeCanceled, ClassInvalid, ClassCanceled, context.Canceled,
		fmt.Errorf("attempt: %w", context.Canceled)}
	for _, outcome := range neutral {
		t.Run(fmt.Sprintf("closed/%v", outcome), func(t *testing.T) {
			b, _, rec := newTestBreaker(BreakerSettings{FailureThreshold: 2})
			mustBreakerCall(t, b, outcomeServer)
			for range 10 {
				mustBreakerCall(t, b, outcome)
			}
			if st := b.Snapshot(); st.ConsecutiveFailures != 1 || st.Neutral != 10 || st.Failures != 1 || st.Successes != 0 {
				t.Fatalf("neutral outcomes changed the counts: %+v", st)
			}
			wantBreakerEvents(t, rec)
			mustBreakerCall(t, b, outcomeServer) // the streak was neither reset nor lengthened
			wantBreakerState(t, b, fsm.Open)
		})
		t.Run(fmt.Sprintf("half_open/%v", outcome), func(t *testing.T) {
			b, _, rec := halfOpenBreaker(t, BreakerSettings{FailureThreshold: 1})
			for range 10 {
				// half_open_max is 1: each neutral probe must give its
				// slot back, or the next Admit would be refused.
				mustBreakerCall(t, b, outcome)
				wantBreakerState(t, b, fsm.HalfOpen)
			}
			if st := b.Snapshot(); st.InFlightProbes != 0 || st.Neutral != 10 {
				t.Fatalf("after neutral probes: %+v", st)
			}
			wantBreakerEvents(t, rec, fsm.EventTrip, fsm.EventProbe)
		})
		t.Run(fmt.Sprintf("open/%v", outcome), func(t *testing.T) {
			b, _, rec := newTestBreaker(BreakerSettings{FailureThreshold: 1})
			p := mustAdmit(t, b)
			mustBreakerCall(t, b, outcomeServer)
			before := b.Snapshot()
			p.Done(outcome)
			after := b.Snapshot()
			before.Stale++
			if after != before {
				t.Fatalf("a neutral outcome in open changed %+v into %+v", before, after)
			}
			wantBreakerEvents(t, rec, fsm.EventTrip)
		})
	}
}

func TestBreakerIgnoresResultsFromOlderGenerations(t *testing.T) {
	t.Run("closed permit returns after the trip", func(t *testing.T) {
		b, _, rec := newTestBreaker(BreakerSettings{FailureThreshold: 2})
		slowOK, slowFail := mustAdmit(t, b), mustAdmit(t, b)
		mustBreakerCall(t, b, outcomeServer)
		mustBreakerCall(t, b, outcomeServer)
		before := b.Snapshot()
		slowOK.Done(nil)
		slowFail.Done(outcomeServer)
		after := b.Snapshot()
		if after.State != fsm.Open || after.Successes != before.Successes || after.Failures != before.Failures || after.Stale != 2 {
			t.Fatalf("stale outcomes counted: before %+v, after %+v", before, after)
		}
		wantBreakerEvents(t, rec, fsm.EventTrip)
	})
	t.Run("probe returns after another probe reopened", func(t *testing.T) {
		b, clock, rec := halfOpenBreaker(t, BreakerSettings{FailureThreshold: 1, OpenTimeout: time.Second, HalfOpenMax: 2})
		a, late := mustAdmit(t, b), mustAdmit(t, b)
		a.Done(outcomeServer) // reopen
		clock.Advance(time.Second)
		c := mustAdmit(t, b) // a new half-open generation
		late.Done(nil)       // stale: neither a success nor a freed slot
		st := b.Snapshot()
		if st.State != fsm.HalfOpen || st.InFlightProbes != 1 || st.Stale != 1 {
			t.Fatalf("after the stale probe: %+v", st)
		}
		// Exactly one slot is left: the stale probe did not free c's.
		d := mustAdmit(t, b)
		if _, err := b.Admit(); !errors.Is(err, ErrOpen) {
			t.Fatalf("a third probe was admitted with half_open_max 2: %v", err)
		}
		c.Done(nil)
		wantBreakerState(t, b, fsm.Closed)
		d.Done(outcomeServer) // stale again: the breaker closed meanwhile
		wantBreakerState(t, b, fsm.Closed)
		if got := b.Snapshot().ConsecutiveFailures; got != 0 {
			t.Fatalf("a stale failure lengthened the streak to %d", got)
		}
		wantBreakerEvents(t, rec, fsm.EventTrip, fsm.EventProbe, fsm.EventReopen, fsm.EventProbe, fsm.EventRecover)
	})
}

func TestBreakerDoneIsIdempotent(t *testing.T) {
	b, _, rec := halfOpenBreaker(t, BreakerSettings{FailureThreshold: 1, HalfOpenMax: 2, HalfOpenSuccesses: 2})
	p := mustAdmit(t, b)
	p.Done(nil)
	p.Done(nil) // would be the second success and close the breaker
	p.Done(outcomeServer)
	p.Release()
	st := b.Snapshot()
	if st.State != fsm.HalfOpen || st.Successes != 1 || st.Failures != 1 || st.InFlightProbes != 0 {
		t.Fatalf("repeated Done counted: %+v", st) // Failures 1 is the trip
	}
	wantBreakerEvents(t, rec, fsm.EventTrip, fsm.EventProbe)
	var none *Permit
	none.Done(outcomeServer) // what Admit returns with an error
	none.Release()
}

func TestBreakerPanickingCallerReleasesItsProbeSlot(t *testing.T) {
	for _, tc := range []struct {
		name string
		call func(b *Breaker)
	}{
		{"defer Release", func(b *Breaker) {
			p, err := b.Admit()
			if err != nil {
				return
			}
			defer p.Release()
			panic("provider adapter bug")
		}},
		{"defer Done with an outcome", func(b *Breaker) {
			p, err := b.Admit()
			if err != nil {
				return
			}
			defer p.Done(ClassCanceled)
			panic("provider adapter bug")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _, _ := halfOpenBreaker(t, BreakerSettings{FailureThreshold: 1})
			panicked := make(chan any)
			go func() {
				defer func() { panicked <- recover() }()
				tc.call(b)
			}()
			if r := <-panicked; r == nil {
				t.Fatal("the call did not panic")
			}
			if st := b.Snapshot(); st.InFlightProbes != 0 || st.State != fsm.HalfOpen {
				t.Fatalf("after the panic: %+v", st)
			}
			mustBreakerCall(t, b, nil) // the slot is free again
			wantBreakerState(t, b, fsm.Closed)
		})
	}
}

func TestBreakerRecordsOneTransitionPerChange(t *testing.T) {
	b, clock, rec := newTestBreaker(BreakerSettings{FailureThreshold: 2, OpenTimeout: 10 * time.Second, HalfOpenMax: 2, HalfOpenSuccesses: 2})
	at := func(d time.Duration) time.Time { return breakerT0.Add(d) }
	mustBreakerCall(t, b, outcomeServer)
	mustBreakerCall(t, b, nil)
	mustBreakerCall(t, b, outcomeServer)
	clock.Advance(time.Second)
	mustBreakerCall(t, b, outcomeTimeout) // trip at 1s
	for range 3 {
		_ = breakerCall(t, b, nil) // rejected: no records
	}
	clock.Advance(10 * time.Second)
	p := mustAdmit(t, b)       // probe at 11s
	mustBreakerCall(t, b, nil) // a second probe succeeds: one of two needed
	clock.Advance(2 * time.Second)
	p.Done(outcomeRateLimited) // reopen at 13s
	clock.Advance(10 * time.Second)
	mustBreakerCall(t, b, nil) // probe at 23s
	mustBreakerCall(t, b, nil) // recover at 23s

	want := []fsm.Transition{
		{Event: fsm.EventTrip, From: fsm.Closed, To: fsm.Open, Time: at(time.Second),
			Detail: fsm.Detail{ErrorClass: "timeout", Reason: "2 consecutive failures"}},
		{Event: fsm.EventProbe, From: fsm.Open, To: fsm.HalfOpen, Time: at(11 * time.Second),
			Detail: fsm.Detail{Reason: "open_timeout 10s passed"}},
		{Event: fsm.EventReopen, From: fsm.HalfOpen, To: fsm.Open, Time: at(13 * time.Second),
			Detail: fsm.Detail{ErrorClass: "rate_limited", Reason: "probe failed"}},
		{Event: fsm.EventProbe, From: fsm.Open, To: fsm.HalfOpen, Time: at(23 * time.Second),
			Detail: fsm.Detail{Reason: "open_timeout 10s passed"}},
		{Event: fsm.EventRecover, From: fsm.HalfOpen, To: fsm.Closed, Time: at(23 * time.Second),
			Detail: fsm.Detail{Reason: "2 probes succeeded"}},
	}
	if len(rec.got) != len(want) {
		t.Fatalf("%d records %v, want %d", len(rec.got), rec.events(), len(want))
	}
	for i := range want {
		want[i].Machine, want[i].ID, want[i].Provider = fsm.KindBreaker, "openai", "openai"
		for k, st := range fsm.Breaker.Steps() { // the machine names its move
			if st.From == want[i].From && st.Event == want[i].Event {
				want[i].Step = k + 1
			}
		}
		if rec.got[i] != want[i] {
			t.Errorf("record %d = %+v\nwant       %+v", i, rec.got[i], want[i])
		}
	}
	st := b.Snapshot()
	if st.Trips != 1 || st.Reopens != 1 || st.Rejections != 3 {
		t.Fatalf("snapshot %+v", st)
	}
}

func TestBreakerSnapshotReportsStateAndCounts(t *testing.T) {
	b, clock, _ := newTestBreaker(BreakerSettings{FailureThreshold: 2, OpenTimeout: 30 * time.Second})
	mustBreakerCall(t, b, nil)
	mustBreakerCall(t, b, outcomeInvalid)
	mustBreakerCall(t, b, outcomeServer)
	clock.Advance(time.Second)
	mustBreakerCall(t, b, outcomeRateLimited)
	_ = breakerCall(t, b, nil)
	opened := breakerT0.Add(time.Second)
	want := BreakerStatus{
		Provider: "openai", State: fsm.Open,
		LastError: "rate_limited", LastErrorAt: opened, OpenedAt: opened, NextProbeAt: opened.Add(30 * time.Second),
		Successes: 1, Failures: 2, Neutral: 1, Rejections: 1, Trips: 1,
	}
	if got := b.Snapshot(); got != want {
		t.Fatalf("snapshot\n got %+v\nwant %+v", got, want)
	}
	clock.Advance(30 * time.Second)
	p := mustAdmit(t, b)
	want.State, want.NextProbeAt, want.InFlightProbes = fsm.HalfOpen, time.Time{}, 1
	if got := b.Snapshot(); got != want {
		t.Fatalf("half-open snapshot\n got %+v\nwant %+v", got, want)
	}
	p.Done(nil)
}

func TestBreakerFillsZeroAndNegativeSettingsWithDefaults(t *testing.T) {
	defaults := BreakerSettings{FailureThreshold: 5, OpenTimeout: 30 * time.Second, HalfOpenMax: 1, HalfOpenSuccesses: 1}
	for _, tc := range []struct {
		name string
		in   BreakerSettings
		want BreakerSettings
	}{
		{"zero", BreakerSettings{}, defaults},
		{"negative", BreakerSettings{FailureThreshold: -1, OpenTimeout: -time.Second, HalfOpenMax: -2, HalfOpenSuccesses: -3}, defaults},
		{"set", BreakerSettings{FailureThreshold: 2, OpenTimeout: time.Second, HalfOpenMax: 3, HalfOpenSuccesses: 4},
			BreakerSettings{FailureThreshold: 2, OpenTimeout: time.Second, HalfOpenMax: 3, HalfOpenSuccesses: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NewBreaker("openai", tc.in, nil, nil).Settings(); got != tc.want {
				t.Fatalf("settings %+v, want %+v", got, tc.want)
			}
		})
	}
}

// Eight goroutines fail at once through a breaker that never times out: the
// breaker must trip exactly once, count exactly failure_threshold failures,
// and account for every call as a failure, a stale outcome or a rejection.
func TestBreakerCountsExactlyUnderParallelFailures(t *testing.T) {
	const goroutines, calls = 8, 500
	b, _, rec := newTestBreaker(BreakerSettings{FailureThreshold: 5, OpenTimeout: time.Hour})
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range calls {
				if p, err := b.Admit(); err == nil {
					runtime.Gosched()
					p.Done(outcomeServer)
				}
			}
		})
	}
	wg.Wait()
	st := b.Snapshot()
	if st.Trips != 1 || st.Failures != 5 || st.Successes != 0 || st.State != fsm.Open {
		t.Fatalf("snapshot %+v: want one trip after exactly 5 counted failures", st)
	}
	if total := st.Failures + st.Stale + st.Rejections; total != goroutines*calls {
		t.Fatalf("failures %d + stale %d + rejections %d = %d, want %d", st.Failures, st.Stale, st.Rejections, total, goroutines*calls)
	}
	wantBreakerEvents(t, rec, fsm.EventTrip)
}

func TestBreakerCountsExactlyUnderParallelMixedOutcomes(t *testing.T) {
	const goroutines, calls = 8, 600
	b, _, rec := newTestBreaker(BreakerSettings{FailureThreshold: 1 << 30})
	outcomes := []error{nil, outcomeServer, outcomeInvalid}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range calls {
				p, err := b.Admit()
				if err != nil {
					t.Errorf("a closed breaker refused: %v", err)
					return
				}
				p.Done(outcomes[(g+i)%len(outcomes)])
			}
		})
	}
	wg.Wait()
	st := b.Snapshot()
	each := uint64(goroutines * calls / len(outcomes))
	if st.Successes != each || st.Failures != each || st.Neutral != each || st.Stale != 0 || st.Rejections != 0 {
		t.Fatalf("snapshot %+v, want %d of each outcome", st, each)
	}
	wantBreakerEvents(t, rec)
}

func TestBreakerParallelProbesNeverExceedHalfOpenMax(t *testing.T) {
	const limit = 3
	b, _, rec := halfOpenBreaker(t, BreakerSettings{FailureThreshold: 1, HalfOpenMax: limit})
	var inFlight, peak atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 300 {
				p, err := b.Admit()
				if err != nil {
					continue
				}
				n := inFlight.Add(1)
				for {
					old := peak.Load()
					if n <= old || peak.CompareAndSwap(old, n) {
						break
					}
				}
				runtime.Gosched()
				inFlight.Add(-1)
				p.Done(outcomeCanceled) // neutral: stays half-open
			}
		})
	}
	wg.Wait()
	if peak.Load() > limit {
		t.Fatalf("%d probes in flight at once, half_open_max %d", peak.Load(), limit)
	}
	st := b.Snapshot()
	if st.InFlightProbes != 0 || st.State != fsm.HalfOpen || st.Neutral+st.Rejections != 8*300 {
		t.Fatalf("snapshot %+v", st)
	}
	wantBreakerEvents(t, rec, fsm.EventTrip, fsm.EventProbe)
}

func TestOpenErrorMatchesErrOpenOnly(t *testing.T) {
	err := fmt.Errorf("target openai: %w", &OpenError{Provider: "openai", State: fsm.Open, ProbeAt: breakerT0})
	if !errors.Is(err, ErrOpen) {
		t.Fatal("a wrapped *OpenError does not match ErrOpen")
	}
	if errors.Is(outcomeServer, ErrOpen) || errors.Is(err, ClassServer) {
		t.Fatal("ErrOpen matches unrelated errors")
	}
	if got := (&OpenError{ProbeAt: breakerT0}).RetryAfter(breakerT0.Add(time.Second)); got != 0 {
		t.Fatalf("RetryAfter past the probe time = %s, want 0", got)
	}
}

// The closed-state path every request takes: one Admit and one Done.
func BenchmarkBreakerAdmitDone(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		br := NewBreaker("openai", BreakerSettings{}, SystemClock, nil)
		b.ReportAllocs()
		for b.Loop() {
			p, err := br.Admit()
			if err != nil {
				b.Fatal(err)
			}
			p.Done(nil)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		br := NewBreaker("openai", BreakerSettings{}, SystemClock, nil)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				p, err := br.Admit()
				if err != nil {
					panic(err)
				}
				p.Done(nil)
			}
		})
	})
}

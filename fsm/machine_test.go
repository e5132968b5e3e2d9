package fsm

import (
	"context"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	lfsm "github.com/looplab/fsm"
)

// fakeClock hands out a fixed instant that tests advance by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// recorder is a hook that keeps every record it sees.
type recorder struct {
	mu  sync.Mutex
	got []Transition
}

func (r *recorder) hook(t Transition) {
	r.mu.Lock()
	r.got = append(r.got, t)
	r.mu.Unlock()
}

// allEvents lists every event of both machines plus one nobody declares, so
// the illegal-pair tests also cover events of the other machine.
func allEvents() []Event {
	var evs []Event
	for _, d := range Definitions() {
		for _, r := range d.Rules {
			evs = append(evs, r.Event)
		}
	}
	return append(evs, Event("no_such_event"))
}

// pathTo finds the shortest sequence of legal events that leads from the
// initial state to s, by breadth-first search over the table itself.
func pathTo(t *testing.T, d *Definition, s State) []Event {
	t.Helper()
	type node struct {
		s    State
		path []Event
	}
	seen := map[State]bool{d.Initial: true}
	queue := []node{{d.Initial, nil}}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		if n.s == s {
			return n.path
		}
		for _, r := range d.Rules {
			to, ok := d.Next(n.s, r.Event)
			if ok && !seen[to] {
				seen[to] = true
				queue = append(queue, node{to, append(append([]Event(nil), n.path...), r.Event)})
			}
		}
	}
	t.Fatalf("%s: state %s is unreachable from %s", d.Kind, s, d.Initial)
	return nil
}

// machineIn returns a machine driven into state s along legal events.
func machineIn(t *testing.T, d *Definition, s State, hook Hook) *Machine {
	t.Helper()
	m := d.New("m-1", hook, nil)
	for _, e := range pathTo(t, d, s) {
		if _, err := m.Fire(context.Background(), e, Detail{}); err != nil {
			t.Fatalf("driving to %s: %v", s, err)
		}
	}
	if got := m.State(); got != s {
		t.Fatalf("driving to %s ended in %s", s, got)
	}
	return m
}

func TestEveryLegalPairLandsWhereTheTableSays(t *testing.T) {
	for _, d := range Definitions() {
		for _, r := range d.Rules {
			for _, from := range r.From {
				t.Run(string(d.Kind)+"/"+string(from)+"/"+string(r.Event), func(t *testing.T) {
					m := machineIn(t, d, from, nil)
					tr, err := m.Fire(context.Background(), r.Event, Detail{})
					if err != nil {
						t.Fatalf("Fire: %v", err)
					}
					if got := m.State(); got != r.To || tr.To != r.To || tr.From != from {
						t.Fatalf("state %s, record %s→%s; want %s→%s", got, tr.From, tr.To, from, r.To)
					}
					if tr.Step < 1 || tr.Step > len(d.Steps()) || d.Steps()[tr.Step-1] != (Step{from, r.Event, r.To}) {
						t.Fatalf("record's Step %d does not name %s→%s on %s in %v", tr.Step, from, r.To, r.Event, d.Steps())
					}
				})
			}
		}
	}
}

// Steps lists each (from, event) pair of the rules once, in rule order, with
// the rule's destination.
func TestStepsListEveryLegalMoveOnce(t *testing.T) {
	for _, d := range Definitions() {
		var want []Step
		for _, r := range d.Rules {
			for _, from := range r.From {
				want = append(want, Step{from, r.Event, r.To})
			}
		}
		if got := d.Steps(); len(got) != len(want) {
			t.Fatalf("%s: %d steps, want %d", d.Kind, len(got), len(want))
		}
		for i, s := range d.Steps() {
			if s != want[i] {
				t.Errorf("%s: step %d = %+v, want %+v", d.Kind, i, s, want[i])
			}
			if to, ok := d.Next(s.From, s.Event); !ok || to != s.To {
				t.Errorf("%s: Next(%s, %s) = %s %v, want %s", d.Kind, s.From, s.Event, to, ok, s.To)
			}
		}
	}
}

// FireAt moves the looplab/fsm instance with Can and SetState instead of
// Event. For every state and event of both machines, a looplab/fsm instance
// built from the same rules must refuse what the table refuses (Event and
// Can alike) and, with Event, land where the table (and so SetState) says.
func TestLooplabEventAgreesWithTheTable(t *testing.T) {
	for _, d := range Definitions() {
		for _, s := range d.States {
			for _, e := range allEvents() {
				to, ok := d.Next(s.State, e)
				f := lfsm.NewFSM(string(s.State), d.events, nil)
				if can := f.Can(string(e)); can != ok {
					t.Fatalf("%s: %s in %s: looplab Can %v, table %v", d.Kind, e, s.State, can, ok)
				}
				err := f.Event(context.Background(), string(e))
				switch {
				case ok && err != nil:
					t.Fatalf("%s: %s in %s: looplab Event refused (%v), table goes to %s", d.Kind, e, s.State, err, to)
				case ok && f.Current() != string(to):
					t.Fatalf("%s: %s in %s: looplab Event went to %s, table to %s", d.Kind, e, s.State, f.Current(), to)
				case !ok && err == nil:
					t.Fatalf("%s: %s in %s: looplab Event went to %s, table refuses", d.Kind, e, s.State, f.Current())
				}
			}
		}
	}
}

func TestIllegalPairsAreRefusedAndChangeNothing(t *testing.T) {
	for _, d := range Definitions() {
		for _, s := range d.States {
			for _, e := range allEvents() {
				if _, ok := d.Next(s.State, e); ok {
					continue
				}
				var rec recorder
				m := machineIn(t, d, s.State, nil)
				m.hook = rec.hook
				_, err := m.Fire(context.Background(), e, Detail{})
				var ite *IllegalTransitionError
				if !errors.As(err, &ite) || !errors.Is(err, ErrIllegalTransition) {
					t.Fatalf("%s: %s in %s: got %v, want *IllegalTransitionError", d.Kind, e, s.State, err)
				}
				if ite.State != s.State || ite.Event != e || ite.Machine != d.Kind || ite.ID != "m-1" {
					t.Fatalf("error fields %+v", *ite)
				}
				if m.State() != s.State {
					t.Fatalf("%s: illegal %s moved %s to %s", d.Kind, e, s.State, m.State())
				}
				if len(rec.got) != 0 {
					t.Fatalf("hook fired for a refused event: %+v", rec.got)
				}
			}
		}
	}
}

func TestTerminalStatesAcceptNothing(t *testing.T) {
	for _, d := range Definitions() {
		for _, s := range d.States {
			if !s.Terminal {
				continue
			}
			m := machineIn(t, d, s.State, nil)
			for _, e := range allEvents() {
				_, err := m.Fire(context.Background(), e, Detail{})
				if !errors.Is(err, ErrIllegalTransition) {
					t.Errorf("%s: terminal %s accepted %s (err %v)", d.Kind, s.State, e, err)
				}
				if !strings.Contains(err.Error(), "terminal") && d.HasEvent(e) {
					t.Errorf("error %q does not say the state is terminal", err)
				}
			}
			if !m.Done() {
				t.Errorf("%s: Done() false in terminal %s", d.Kind, s.State)
			}
		}
	}
}

func TestHookFiresOncePerTransitionWithTheRecord(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	var rec recorder
	m := Request.New("req_abc123", rec.hook, clock.now)
	steps := []struct {
		e Event
		d Detail
	}{
		{EventValidate, Detail{}},
		{EventAttempt, Detail{Attempt: 1, Provider: "openai", Model: "gpt-4"}},
		{EventRetry, Detail{Attempt: 1, Provider: "openai", ErrorClass: "timeout", Wait: 2 * time.Second}},
		{EventAttempt, Detail{Attempt: 2, Provider: "openai", Model: "gpt-4"}},
		{EventSucceed, Detail{Attempt: 2, Provider: "openai", Status: 200, Latency: 150 * time.Millisecond}},
	}
	want := []Transition{}
	from := Received
	for i, st := range steps {
		clock.t = clock.t.Add(time.Duration(i+1) * time.Millisecond)
		to, _ := Request.Next(from, st.e)
		step := 0
		for k, s := range Request.Steps() {
			if s.From == from && s.Event == st.e {
				step = k + 1
			}
		}
		want = append(want, Transition{Machine: KindRequest, ID: "req_abc123", Event: st.e, From: from, To: to, Time: clock.t, Step: step, Detail: st.d})
		got, err := m.Fire(context.Background(), st.e, st.d)
		if err != nil {
			t.Fatal(err)
		}
		if got != want[i] {
			t.Fatalf("step %d returned %+v, want %+v", i, got, want[i])
		}
		from = to
	}
	if len(rec.got) != len(want) {
		t.Fatalf("hook fired %d times for %d transitions", len(rec.got), len(want))
	}
	for i := range want {
		if rec.got[i] != want[i] {
			t.Errorf("hook record %d = %+v, want %+v", i, rec.got[i], want[i])
		}
	}
}

func TestFireAtRecordsTheCallersTimeAndZeroMeansTheClock(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	var rec recorder
	m := Request.New("req_at", rec.hook, clock.now)
	at := clock.t.Add(-time.Microsecond)
	if got, err := m.FireAt(context.Background(), EventValidate, Detail{}, at); err != nil || !got.Time.Equal(at) {
		t.Fatalf("FireAt(at) = %v at %v, want %v", err, got.Time, at)
	}
	if got, err := m.FireAt(context.Background(), EventAttempt, Detail{}, time.Time{}); err != nil || !got.Time.Equal(clock.t) {
		t.Fatalf("FireAt(zero) = %v at %v, want the clock's %v", err, got.Time, clock.t)
	}
	if _, err := m.FireAt(context.Background(), EventValidate, Detail{}, at); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("FireAt of an illegal event: %v", err)
	}
	if len(rec.got) != 2 || !rec.got[0].Time.Equal(at) || !rec.got[1].Time.Equal(clock.t) {
		t.Fatalf("hook saw %+v", rec.got)
	}
}

func TestCancelledContextNeverWedgesAMachine(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Unix(1, 0))
	defer cancel2()
	for name, ctx := range map[string]context.Context{"cancelled": cancelled, "deadline": expired} {
		t.Run(name, func(t *testing.T) {
			m := Request.New("r", nil, nil)
			for _, e := range []Event{EventValidate, EventAttempt, EventRetry, EventAttempt, EventGiveUp} {
				if _, err := m.Fire(ctx, e, Detail{}); err != nil {
					t.Fatalf("%s with a %s context: %v", e, name, err)
				}
			}
			if m.State() != Failed {
				t.Fatalf("ended in %s, want failed", m.State())
			}
		})
	}
}

// A seeded random walk fires random events, legal or not, and checks each
// step against the table: legal ones land where it says, the rest change
// nothing. The walk must never leave the declared states.
func TestRandomWalkStaysInsideTheTable(t *testing.T) {
	rng := rand.New(rand.NewSource(20261125))
	events := allEvents()
	for _, d := range Definitions() {
		for walk := 0; walk < 300; walk++ {
			m := d.New("walk", nil, nil)
			for step := 0; step < 40 && !m.Done(); step++ {
				from := m.State()
				e := events[rng.Intn(len(events))]
				want, legal := d.Next(from, e)
				_, err := m.Fire(context.Background(), e, Detail{})
				got := m.State()
				switch {
				case legal && (err != nil || got != want):
					t.Fatalf("%s walk %d: %s in %s → %s, %v; want %s", d.Kind, walk, e, from, got, err, want)
				case !legal && (err == nil || got != from):
					t.Fatalf("%s walk %d: illegal %s in %s → %s, %v", d.Kind, walk, e, from, got, err)
				case !d.HasState(got):
					t.Fatalf("%s walk %d: undeclared state %s", d.Kind, walk, got)
				case m.f.Current() != string(got):
					// The machine keeps its state's position beside the
					// looplab/fsm instance: the two must never part.
					t.Fatalf("%s walk %d: machine in %s, its looplab/fsm in %s", d.Kind, walk, got, m.f.Current())
				}
			}
			// Released machines give their instances to the next walks.
			m.Release()
		}
	}
}

func TestConcurrentFiresAreSerialisedAndRecordedInOrder(t *testing.T) {
	var rec recorder
	m := Breaker.New("openai", rec.hook, nil)
	cycle := []Event{EventTrip, EventProbe, EventReopen, EventProbe, EventRecover}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				// Most of these are refused: only the event the current
				// state allows goes through.
				_, _ = m.Fire(context.Background(), cycle[(g+i)%len(cycle)], Detail{})
			}
		}(g)
	}
	wg.Wait()
	state := Closed
	for i, tr := range rec.got {
		if tr.From != state {
			t.Fatalf("record %d starts in %s, machine was in %s", i, tr.From, state)
		}
		if to, ok := Breaker.Next(tr.From, tr.Event); !ok || to != tr.To {
			t.Fatalf("record %d is not in the table: %+v", i, tr)
		}
		state = tr.To
	}
	if state != m.State() {
		t.Fatalf("records end in %s, machine in %s", state, m.State())
	}
}

func TestDiagramsDrawEveryRule(t *testing.T) {
	for _, d := range Definitions() {
		mer, dot := d.Mermaid(), d.DOT()
		for _, r := range d.Rules {
			for _, from := range r.From {
				if !strings.Contains(mer, string(from)+" --> "+string(r.To)+": "+string(r.Event)+"\n") {
					t.Errorf("%s mermaid lacks %s -%s-> %s", d.Kind, from, r.Event, r.To)
				}
				if !strings.Contains(dot, `"`+string(from)+`" -> "`+string(r.To)+`" [label="`+string(r.Event)+`"]`) {
					t.Errorf("%s dot lacks %s -%s-> %s", d.Kind, from, r.Event, r.To)
				}
			}
		}
		if d.Mermaid() != mer || d.DOT() != dot {
			t.Errorf("%s diagrams are not reproducible", d.Kind)
		}
	}
}

func TestDocsAreFresh(t *testing.T) {
	for name, want := range DocFiles() {
		got, err := os.ReadFile(filepath.Join("..", "docs", name))
		if err != nil || string(got) != want {
			t.Errorf("docs/%s is stale or missing; run `make docs` and commit the result", name)
		}
	}
}

func BenchmarkRequestMachineLife(b *testing.B) {
	var n int
	hook := func(Transition) { n++ }
	ctx := context.Background()
	life := []Event{EventValidate, EventAttempt, EventRetry, EventAttempt, EventSucceed}
	b.ReportAllocs()
	for b.Loop() {
		m := Request.New("req_0123456789abcdef", hook, nil)
		for _, e := range life {
			if _, err := m.Fire(ctx, e, Detail{Attempt: 1, Provider: "openai"}); err != nil {
				b.Fatal(err)
			}
		}
		m.Release()
	}
}

// BenchmarkRequestMachineLifeUnpooled is the same life without Release: every
// machine builds a new looplab/fsm instance.
func BenchmarkRequestMachineLifeUnpooled(b *testing.B) {
	ctx := context.Background()
	life := []Event{EventValidate, EventAttempt, EventRetry, EventAttempt, EventSucceed}
	b.ReportAllocs()
	for b.Loop() {
		m := Request.New("req_0123456789abcdef", func(Transition) {}, nil)
		for _, e := range life {
			if _, err := m.Fire(ctx, e, Detail{Attempt: 1, Provider: "openai"}); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func TestReleasedMachineStaysFinalAndItsFSMIsReused(t *testing.T) {
	m := Request.New("a", nil, nil)
	m.Release() // not terminal: ignored
	for _, e := range []Event{EventValidate, EventAttempt, EventSucceed} {
		if _, err := m.Fire(context.Background(), e, Detail{}); err != nil {
			t.Fatal(err)
		}
	}
	m.Release()
	m.Release() // twice is harmless
	if m.State() != Succeeded || !m.Done() {
		t.Fatalf("released machine reads %s", m.State())
	}
	if _, err := m.Fire(context.Background(), EventAttempt, Detail{}); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("a released machine accepted an event: %v", err)
	}
	// The next machine may get the pooled instance: it must start fresh.
	n := Request.New("b", nil, nil)
	if n.State() != Received {
		t.Fatalf("a reused instance starts in %s", n.State())
	}
	if _, err := n.Fire(context.Background(), EventValidate, Detail{}); err != nil {
		t.Fatal(err)
	}
}

// StepOf finds every move a machine records, and nothing for a record whose
// Step is missing, out of range, of the other machine, or names another move.
func TestStepOfNamesOnlyTheRecordedMove(t *testing.T) {
	for _, d := range Definitions() {
		other := Request
		if d == Request {
			other = Breaker
		}
		for i, st := range d.Steps() {
			tr := Transition{Machine: d.Kind, Event: st.Event, From: st.From, To: st.To, Step: i + 1}
			if got, ok := d.StepOf(tr); !ok || got != i {
				t.Fatalf("%s: StepOf(step %d) = %d, %v", d.Kind, i+1, got, ok)
			}
			if _, ok := other.StepOf(tr); ok {
				t.Errorf("%s: %s's StepOf accepted a %s record", d.Kind, other.Kind, d.Kind)
			}
			for _, bad := range []int{0, -1, len(d.Steps()) + 1} {
				tr.Step = bad
				if _, ok := d.StepOf(tr); ok {
					t.Errorf("%s: StepOf accepted Step %d", d.Kind, bad)
				}
			}
			tr.Step = i + 1
			tr.To = "elsewhere"
			if _, ok := d.StepOf(tr); ok {
				t.Errorf("%s: StepOf accepted step %d with another destination", d.Kind, i+1)
			}
			if i > 0 {
				tr = Transition{Machine: d.Kind, Event: st.Event, From: st.From, To: st.To, Step: i}
				if _, ok := d.StepOf(tr); ok {
					t.Errorf("%s: StepOf accepted step %d naming move %d", d.Kind, i, i+1)
				}
			}
		}
	}
}

package fsm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	lfsm "github.com/looplab/fsm"
)

// ErrIllegalTransition matches every *IllegalTransitionError with errors.Is.
var ErrIllegalTransition = errors.New("fsm: illegal transition")

// IllegalTransitionError reports an event that the table does not allow in
// the machine's current state. The machine is left unchanged.
type IllegalTransitionError struct {
	Machine Kind
	ID      string
	State   State
	Event   Event
}

func (e *IllegalTransitionError) Error() string {
	switch {
	case !definitionOf(e.Machine).HasEvent(e.Event):
		return fmt.Sprintf("fsm: %s %s: unknown event %q", e.Machine, e.ID, e.Event)
	case definitionOf(e.Machine).IsTerminal(e.State):
		return fmt.Sprintf("fsm: %s %s: event %q in terminal state %q", e.Machine, e.ID, e.Event, e.State)
	default:
		return fmt.Sprintf("fsm: %s %s: event %q is not allowed in state %q", e.Machine, e.ID, e.Event, e.State)
	}
}

// Is makes errors.Is(err, ErrIllegalTransition) true.
func (e *IllegalTransitionError) Is(target error) bool { return target == ErrIllegalTransition }

func definitionOf(k Kind) *Definition {
	if k == KindBreaker {
		return Breaker
	}
	return Request
}

// Machine is one running instance of a Definition on looplab/fsm. It is safe
// for concurrent use: Fire calls are serialised, and the hook sees the
// transitions of one machine in the order they happened.
type Machine struct {
	def  *Definition
	id   string
	hook Hook
	now  func() time.Time

	mu sync.Mutex // guards f and at across the check, the event and the hook
	f  *lfsm.FSM  // nil once released
	// at is the position in def.States of the state f is in, moved with
	// it, and after Release the state it was released in.
	at int
}

// New starts a machine of this definition in its initial state. id names it in
// transition records (a request ID, or a provider name). hook may be nil; now
// nil means time.Now.
func (d *Definition) New(id string, hook Hook, now func() time.Time) *Machine {
	if now == nil {
		now = time.Now
	}
	f, _ := d.pool.Get().(*lfsm.FSM)
	if f == nil {
		f = lfsm.NewFSM(string(d.Initial), d.events, nil)
	} else {
		f.SetState(string(d.Initial))
	}
	return &Machine{def: d, id: id, hook: hook, now: now, f: f, at: d.start}
}

// Release hands a machine that has reached a terminal state back to its
// definition, which reuses its looplab/fsm instance for the next New. It is
// optional and does nothing before a terminal state. Afterwards the machine
// stays in its final state and accepts no event.
func (m *Machine) Release() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f == nil || !m.def.States[m.at].Terminal {
		return
	}
	m.def.pool.Put(m.f)
	m.f = nil
}

// current returns the state; m.mu must be held.
func (m *Machine) current() State { return m.def.States[m.at].State }

// ID returns the name the machine was created with.
func (m *Machine) ID() string { return m.id }

// Definition returns the machine's table.
func (m *Machine) Definition() *Definition { return m.def }

// State returns the current state.
func (m *Machine) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.current()
}

// Done reports whether the machine is in a terminal state.
func (m *Machine) Done() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.def.States[m.at].Terminal
}

// Fire applies event e with the pipeline's detail. On success the hook is
// called once with the record, which is also returned. An event the table does
// not allow returns an *IllegalTransitionError and changes nothing.
//
// ctx's cancellation is deliberately ignored. Cancellation is the pipeline's
// business, expressed as an event (give_up), never as a wedged machine (the
// pitfall of DESIGN §8: looplab/fsm's Event, which FireAt does not use, leaves
// a machine stuck for good when fired with a cancelled context).
func (m *Machine) Fire(ctx context.Context, e Event, d Detail) (Transition, error) {
	return m.FireAt(ctx, e, d, time.Time{})
}

// FireAt is Fire for a caller that has just read the machine's clock: at is
// the transition's time (zero means now). It saves a clock read per
// transition on the request path.
//
// The transition is looplab/fsm's: Can checks the event against the
// instance's own table (built from the same rules as Next) and SetState moves
// the instance. That is what the library's Event does for a machine without
// callbacks, minus the callback dispatch: Event also builds a cancellable
// context, an *Event and two closures for callbacks this package never
// registers (the hook runs after the transition, here), five allocations and
// most of a request machine's cost (docs/performance.md).
// TestLooplabEventAgreesWithTheTable checks, for every state and event, that
// Event would have landed where SetState puts the machine.
func (m *Machine) FireAt(ctx context.Context, e Event, d Detail, at time.Time) (Transition, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	from := m.current()
	step := m.def.stepFrom(m.at, e)
	if step < 0 {
		return Transition{}, &IllegalTransitionError{Machine: m.def.Kind, ID: m.id, State: from, Event: e}
	}
	to := m.def.steps[step].To
	// Cancellation is the pipeline's business (see Fire); the transition
	// itself cannot be cancelled.
	_ = ctx
	if !m.f.Can(string(e)) {
		// The table and looplab/fsm were built from the same rules, so this
		// is a bug in this package, not in the caller.
		return Transition{}, fmt.Errorf("fsm: %s %s: looplab/fsm refused %q in %q", m.def.Kind, m.id, e, from)
	}
	m.f.SetState(string(to))
	m.at = m.def.stepTo[step]
	if at.IsZero() {
		at = m.now()
	}
	t := Transition{Machine: m.def.Kind, ID: m.id, Event: e, From: from, To: to, Time: at, Step: step + 1, Detail: d}
	if m.hook != nil {
		m.hook(t)
	}
	return t, nil
}

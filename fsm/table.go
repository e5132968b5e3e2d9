package fsm

import (
	"fmt"
	"sync"

	lfsm "github.com/looplab/fsm"
)

// StateInfo documents one state of a machine.
type StateInfo struct {
	State    State
	Terminal bool   // a terminal state accepts no event
	Doc      string // what being in this state means
}

// Rule is one row of a transition table: Event moves the machine from any of
// From to To.
type Rule struct {
	Event Event
	From  []State
	To    State
	Doc   string // when the event is fired
}

// Definition is one machine declared as data. It is immutable after package
// initialisation and safe for concurrent use.
type Definition struct {
	Kind    Kind
	Initial State
	States  []StateInfo // in display order
	Rules   []Rule      // in display order

	events   []lfsm.EventDesc // the table in looplab/fsm's form, built once
	steps    []Step           // every (from, event) pair of Rules, in order
	next     map[stepKey]int  // index into steps
	terminal map[State]bool
	known    map[Event]bool

	// The same table by position, for Machine: out[i] lists the steps
	// leaving States[i], in order, and stepTo[j] is the position of
	// steps[j].To. A machine keeps the position of its state, so a move is
	// found by comparing a few event names instead of hashing two strings.
	out    [][]int
	stepTo []int
	start  int // the position of Initial

	// pool keeps the looplab/fsm instances of released machines: building
	// one (NewFSM) is most of a request machine's cost.
	pool *sync.Pool
}

type stepKey struct {
	from  State
	event Event
}

// Step is one legal move of a machine: Event takes it from From to To. A
// Rule with several From states makes one Step for each.
type Step struct {
	From  State
	Event Event
	To    State
}

// Request is the request machine of DESIGN §2: one instance per request.
var Request = define(Definition{
	Kind:    KindRequest,
	Initial: Received,
	States: []StateInfo{
		{Received, false, "the request has arrived; nothing is known about it yet"},
		{Validated, false, "the body decoded, passed validation and the model has a route"},
		{Attempting, false, "a call to one target is in flight (a stream stays here while it flows)"},
		{Backoff, false, "waiting before the next attempt (backoff or a provider's Retry-After)"},
		{Failover, false, "moving on to the next target of the route"},
		{Succeeded, true, "the client got a complete answer"},
		{Failed, true, "the client got an error answer (or went away)"},
	},
	Rules: []Rule{
		{EventValidate, []State{Received}, Validated,
			"the body decodes, passes validation, and the model has a route"},
		{EventReject, []State{Received}, Failed,
			"it does not: 400/404/413/415 to the client, no provider is called"},
		{EventAttempt, []State{Validated, Backoff, Failover}, Attempting,
			"a call to one target starts"},
		{EventSucceed, []State{Attempting}, Succeeded,
			"2xx with a well-formed body (or a stream's clean end)"},
		{EventRetry, []State{Attempting}, Backoff,
			"a retryable error, attempts left on this target, its breaker admits, the deadline allows the wait"},
		{EventFailover, []State{Validated, Attempting, Backoff}, Failover,
			"rate limited, connection refused, attempts on this target used up, or its breaker is open — and another target is left"},
		{EventGiveUp, []State{Validated, Attempting, Backoff, Failover}, Failed,
			"non-retryable error, no target left, deadline reached, or the client went away"},
	},
})

// Breaker is the circuit-breaker machine of DESIGN §3: one instance per
// provider, shared by all requests.
var Breaker = define(Definition{
	Kind:    KindBreaker,
	Initial: Closed,
	States: []StateInfo{
		{Closed, false, "calls flow; consecutive failures are counted"},
		{Open, false, "calls are rejected without reaching the provider until open_timeout has passed"},
		{HalfOpen, false, "up to half_open_max probe calls are admitted to test recovery"},
	},
	Rules: []Rule{
		{EventTrip, []State{Closed}, Open,
			"failure_threshold consecutive failures (default 5)"},
		{EventProbe, []State{Open}, HalfOpen,
			"open_timeout has passed (default 30 s); the next call is admitted as a probe"},
		{EventRecover, []State{HalfOpen}, Closed,
			"half_open_successes probes succeeded (default 1)"},
		{EventReopen, []State{HalfOpen}, Open,
			"a probe failed"},
	},
})

// Definitions lists every machine, in display order.
func Definitions() []*Definition { return []*Definition{Request, Breaker} }

// define checks a declaration and derives the lookup tables from it. A
// malformed table is a programming error and panics at start-up.
func define(d Definition) *Definition {
	d.pool = &sync.Pool{}
	d.next = make(map[stepKey]int)
	d.terminal = make(map[State]bool)
	d.known = make(map[Event]bool)
	declared := make(map[State]bool)
	for _, s := range d.States {
		declared[s.State] = true
		if s.Terminal {
			d.terminal[s.State] = true
		}
	}
	if !declared[d.Initial] {
		panic(fmt.Sprintf("fsm: %s: initial state %q is not declared", d.Kind, d.Initial))
	}
	for _, r := range d.Rules {
		if !declared[r.To] {
			panic(fmt.Sprintf("fsm: %s: event %q goes to undeclared state %q", d.Kind, r.Event, r.To))
		}
		src := make([]string, 0, len(r.From))
		for _, from := range r.From {
			if !declared[from] || d.terminal[from] {
				panic(fmt.Sprintf("fsm: %s: event %q leaves undeclared or terminal state %q", d.Kind, r.Event, from))
			}
			if _, dup := d.next[stepKey{from, r.Event}]; dup {
				panic(fmt.Sprintf("fsm: %s: event %q from %q declared twice", d.Kind, r.Event, from))
			}
			d.next[stepKey{from, r.Event}] = len(d.steps)
			d.steps = append(d.steps, Step{From: from, Event: r.Event, To: r.To})
			src = append(src, string(from))
		}
		d.known[r.Event] = true
		d.events = append(d.events, lfsm.EventDesc{Name: string(r.Event), Src: src, Dst: string(r.To)})
	}
	d.out = make([][]int, len(d.States))
	d.start = d.position(d.Initial)
	for j, st := range d.steps {
		from := d.position(st.From)
		d.out[from] = append(d.out[from], j)
		d.stepTo = append(d.stepTo, d.position(st.To))
	}
	return &d
}

// position returns the index in States of a declared state; define checks
// every state it asks for first.
func (d *Definition) position(s State) int {
	i := d.index(s)
	if i < 0 {
		panic(fmt.Sprintf("fsm: %s: state %q is not declared", d.Kind, s))
	}
	return i
}

// index returns the index of s in States, or -1.
func (d *Definition) index(s State) int {
	for i, info := range d.States {
		if info.State == s {
			return i
		}
	}
	return -1
}

// stepFrom returns the index in steps of event e from the state at
// position at, or -1 when the table does not allow it.
func (d *Definition) stepFrom(at int, e Event) int {
	for _, j := range d.out[at] {
		if d.steps[j].Event == e {
			return j
		}
	}
	return -1
}

// Next reports where event e takes a machine in state s, and whether the
// table allows it at all. Replay and the tests use it as the oracle.
func (d *Definition) Next(s State, e Event) (State, bool) {
	i, ok := d.next[stepKey{s, e}]
	if !ok {
		return "", false
	}
	return d.steps[i].To, true
}

// Steps lists every legal move of the machine, rule by rule in display
// order; a Transition made by a machine carries its move's place in this
// list (Transition.Step). The slice must not be modified.
func (d *Definition) Steps() []Step { return d.steps }

// StepOf returns the index in Steps of the move t records, when t is a
// record of this kind of machine whose Step names that move (its From,
// Event and To); ok is false for any other record: one made by hand, read
// back by replay without a Step, or with a wrong one. Hooks use it to find
// what they keep per move without hashing the names.
func (d *Definition) StepOf(t Transition) (i int, ok bool) {
	i = t.Step - 1
	if t.Machine != d.Kind || i < 0 || i >= len(d.steps) {
		return 0, false
	}
	if s := d.steps[i]; s.From != t.From || s.Event != t.Event || s.To != t.To {
		return 0, false
	}
	return i, true
}

// IsTerminal reports whether s accepts no further event.
func (d *Definition) IsTerminal(s State) bool { return d.terminal[s] }

// HasEvent reports whether e is an event of this machine at all.
func (d *Definition) HasEvent(e Event) bool { return d.known[e] }

// HasState reports whether s is a state of this machine.
func (d *Definition) HasState(s State) bool { return d.index(s) >= 0 }

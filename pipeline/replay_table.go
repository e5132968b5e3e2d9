package pipeline

import "github.com/llm-gateway/gateway/fsm"

// replayTable is one fsm.Definition indexed for replay: states and events as
// small integers, and the transition table as a dense array filled by asking
// Definition.Next about every (state, event) pair. It is the fsm table itself,
// in a form that costs no hashing per log line.
type replayTable struct {
	def     *fsm.Definition
	states  []fsm.State
	events  []fsm.Event
	actions []string // the journal's action for each event
	next    [][]int8 // [state][event] → state, or -1 where the table refuses
	final   []bool   // [state] → terminal
	initial int8
}

var (
	requestTable = newReplayTable(fsm.Request)
	breakerTable = newReplayTable(fsm.Breaker)
)

func newReplayTable(d *fsm.Definition) *replayTable {
	t := &replayTable{def: d}
	for _, s := range d.States {
		t.states = append(t.states, s.State)
		t.final = append(t.final, d.IsTerminal(s.State))
	}
	for _, r := range d.Rules {
		if t.event([]byte(r.Event)) < 0 {
			t.events = append(t.events, r.Event)
			t.actions = append(t.actions, actionOf(fsm.Transition{Machine: d.Kind, Event: r.Event}))
		}
	}
	t.next = make([][]int8, len(t.states))
	for si, s := range t.states {
		t.next[si] = make([]int8, len(t.events))
		for ei, e := range t.events {
			t.next[si][ei] = -1
			if to, ok := d.Next(s, e); ok {
				t.next[si][ei] = t.state([]byte(to))
			}
		}
	}
	t.initial = t.state([]byte(d.Initial))
	return t
}

// state returns the index of the state named b, or -1.
func (t *replayTable) state(b []byte) int8 {
	for i, s := range t.states {
		if string(s) == string(b) {
			return int8(i)
		}
	}
	return -1
}

// event returns the index of the event named b, or -1.
func (t *replayTable) event(b []byte) int8 {
	for i, e := range t.events {
		if string(e) == string(b) {
			return int8(i)
		}
	}
	return -1
}

// isTransitionAction reports whether a line with this action should have
// been a transition of some machine (and so must carry machine, event, from
// and to).
func isTransitionAction(action []byte) bool {
	for _, t := range []*replayTable{requestTable, breakerTable} {
		for _, a := range t.actions {
			if a == string(action) {
				return true
			}
		}
	}
	return false
}

// terminal reports whether state s accepts no event.
func (t *replayTable) terminal(s int8) bool { return s >= 0 && t.final[s] }

// name returns the state's name, or "?" for an unknown one.
func (t *replayTable) name(s int8) fsm.State {
	if s < 0 {
		return "?"
	}
	return t.states[s]
}

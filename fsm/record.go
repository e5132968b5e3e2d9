package fsm

import "time"

// Transition is the record of one transition of one machine: what the hook
// receives, what the journal logs and what replay reads back.
type Transition struct {
	Machine Kind
	ID      string // the request ID, or the provider name for a breaker
	Event   Event
	From    State
	To      State
	Time    time.Time
	// Step is 1 + the index of the move (From, Event) in the machine's
	// Definition.Steps(), so that a hook can find what it keeps per move
	// without hashing the names; 0 when the record was not made by a
	// machine (replay reads records back without it).
	Step int
	Detail
}

// Detail carries what the pipeline knows about a transition beyond the table:
// which attempt, which provider, why. Zero fields are absent.
type Detail struct {
	Attempt    int           // provider calls made so far for this request, this one included
	Provider   string        // the target's provider
	Model      string        // the target's model name at that provider
	ErrorClass string        // the error class that caused the transition
	Wait       time.Duration // the backoff wait this transition starts
	Status     int           // the HTTP status answered to the client (terminal transitions)
	Latency    time.Duration // the attempt's or the request's latency
	Reason     string        // a short word for why, when the event alone does not say
}

// Hook receives every transition of the machines it is attached to, once per
// transition, after the machine has moved. It runs while the machine's lock is
// held, so records of one machine arrive in order; it must not fire events on
// the same machine.
type Hook func(Transition)

// Package fsm declares the gateway's two state machines as data — the request
// machine (one instance per request) and the breaker machine (one instance per
// provider) — and runs them on github.com/looplab/fsm.
//
// Each machine is declared once, as a Definition: typed State and Event
// constants and a transition table. The same table builds every looplab/fsm
// instance, renders the diagrams in docs/, drives replay's checks and feeds
// the transition tests, so the four can never disagree.
//
// Every transition of every machine is reported through one Hook as a
// Transition record; logging, metrics and replay hang off that one place.
// The looplab/fsm instance checks each event against its table (Can) and
// holds the state (SetState). A Machine keeps the position of that state
// beside it, moved in the same critical section, so it finds a move among
// the few that leave its state without reading the state back or hashing
// names. No looplab/fsm callbacks are registered, so its Event, which builds
// a cancellable context, an event and two closures per call for them, is not
// used (docs/performance.md).
//
// This package knows nothing of HTTP or providers, and imports no other
// package of this module.
package fsm

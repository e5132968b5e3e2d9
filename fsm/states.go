package fsm

// Kind names a machine definition; it is the "machine" field of every
// transition record and log line.
type Kind string

// State is a state of one of the machines. Its string is the looplab/fsm state
// name, the log field value and the diagram node name.
type State string

// Event is an event of one of the machines. Its string is the looplab/fsm event
// name and the log field value.
type Event string

// The two machines.
const (
	KindRequest Kind = "request"
	KindBreaker Kind = "breaker"
)

// States of the request machine.
const (
	Received   State = "received"
	Validated  State = "validated"
	Attempting State = "attempting"
	Backoff    State = "backoff"
	Failover   State = "failover"
	Succeeded  State = "succeeded"
	Failed     State = "failed"
)

// Events of the request machine.
const (
	EventValidate Event = "validate"
	EventReject   Event = "reject"
	EventAttempt  Event = "attempt"
	EventSucceed  Event = "succeed"
	EventRetry    Event = "retry"
	EventFailover Event = "failover"
	EventGiveUp   Event = "give_up"
)

// States of the breaker machine.
const (
	Closed   State = "closed"
	Open     State = "open"
	HalfOpen State = "half_open"
)

// Events of the breaker machine.
const (
	EventTrip    Event = "trip"
	EventProbe   Event = "probe"
	EventRecover Event = "recover"
	EventReopen  Event = "reopen"
)

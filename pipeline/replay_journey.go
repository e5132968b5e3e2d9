package pipeline

import (
	"fmt"
	"time"

	"github.com/llm-gateway/gateway/fsm"
)

// journeyState is one request journey being replayed: from its received
// line until its terminal transition, when it is dropped (or handed over, if
// kept). Its steps are recorded as it goes, so that the journey of a request
// found wrong can be shown whole; the step slices are reused.
type journeyState struct {
	id       string
	state    int8
	line     int64 // the received line (or the first, for a partial journey)
	lastLine int64
	start    int64 // the first line's timestamp, Unix ns, when hasStart
	hasStart bool
	partial  bool // no received line
	attempts int
	current  string // the provider last attempted (or skipped): where a failover leaves from
	model    string
	steps    []JourneyStep
	problems []Problem
	pend     pendingStep
}

// begin opens a journey for id at the current line.
func (rp *replayer) begin(id []byte, partial bool) *journeyState {
	var js *journeyState
	if n := len(rp.free); n > 0 {
		js, rp.free = rp.free[n-1], rp.free[:n-1]
		steps := js.steps[:0]
		*js = journeyState{steps: steps}
	} else {
		js = &journeyState{steps: make([]JourneyStep, 0, 8)}
	}
	js.id = string(id)
	js.line = rp.lineNo
	js.partial = partial
	js.state = requestTable.initial
	js.start, js.hasStart = rp.ts, rp.hasTS
	rp.open[js.id] = js
	return js
}

// received starts a new journey (a client may reuse an ID: each received
// line begins one). A previous journey of the same ID that has not ended
// never will: that is a problem of its own.
func (rp *replayer) received() {
	r := &rp.rec
	if old := rp.open[string(r.requestID)]; old != nil {
		rp.problem(old, ProblemDuplicateReceived, fsm.KindRequest, old.id,
			fmt.Sprintf("received again while its journey from line %d is unfinished (in state %s)", old.line, requestTable.name(old.state)))
		rp.unfinished(old, "", false)
	}
	rp.rep.Requests.Received++
	js := rp.begin(r.requestID, false)
	js.model = rp.names.get(r.model)
	rp.step(js)
}

// note replays a line of a journey that is not a transition: failed (an
// attempt's outcome) or skipped (a target passed over: its breaker open, or
// it cannot serve the request).
func (rp *replayer) note() {
	r := &rp.rec
	js := rp.open[string(r.requestID)]
	if js == nil {
		if line, ok := rp.finished.get(r.requestID); ok {
			rp.problem(nil, ProblemAfterTerminal, fsm.KindRequest, string(r.requestID),
				fmt.Sprintf("action=%s logged after the request's terminal transition at line %d", r.action, line))
		}
		// Otherwise the journey began before the log did; its next
		// transition says so.
		return
	}
	rp.step(js)
	if len(r.provider) == 0 {
		return
	}
	ps := rp.provider(r.provider)
	if string(r.action) == "failed" {
		ps.Failures[rp.names.get(r.errClass)]++
	} else {
		ps.Skipped++
		js.current = rp.names.get(r.provider)
	}
}

// requestTransition re-drives one step of a request journey.
func (rp *replayer) requestTransition() {
	r := &rp.rec
	js := rp.open[string(r.requestID)]
	if js == nil {
		if line, ok := rp.finished.get(r.requestID); ok {
			rp.problem(nil, ProblemAfterTerminal, fsm.KindRequest, string(r.requestID),
				fmt.Sprintf("event %s logged after the request's terminal transition at line %d", r.event, line))
			return
		}
		// The journey began before the log did (or its received line is
		// lost): follow it from the state its first line logs.
		js = rp.begin(r.requestID, true)
		if s := requestTable.state(r.from); s >= 0 {
			js.state = s
		}
		const why = "a transition of a request whose received line is not in the log"
		if rp.opts.AllowIncomplete {
			rp.warn(ProblemNoReceived, fsm.KindRequest, js.id, why)
		} else {
			rp.problem(js, ProblemNoReceived, fsm.KindRequest, js.id, why)
		}
	}
	next, kind, reason := rp.check(requestTable, js.state, &js.pend)
	if kind != "" {
		rp.problem(js, kind, fsm.KindRequest, js.id, reason)
	}
	rp.step(js)
	rp.countTransition(js)
	js.state = next
	if requestTable.terminal(next) {
		rp.end(js)
	}
}

// countTransition adds a request transition to the providers' counters.
func (rp *replayer) countTransition(js *journeyState) {
	r := &rp.rec
	switch string(r.event) {
	case string(fsm.EventAttempt):
		js.attempts++
		if len(r.provider) > 0 {
			rp.provider(r.provider).Attempts++
			js.current = rp.names.get(r.provider)
		}
	case string(fsm.EventSucceed):
		if len(r.provider) > 0 {
			rp.provider(r.provider).Successes++
		}
	case string(fsm.EventRetry):
		if len(r.provider) > 0 {
			rp.provider(r.provider).Retries++
		}
	case string(fsm.EventFailover):
		if js.current != "" {
			rp.providerNamed(js.current).FailoversOut++
		}
		if len(r.provider) > 0 {
			rp.provider(r.provider).FailoversIn++
			js.current = rp.names.get(r.provider)
		}
	}
}

// step appends the current line to the journey.
func (rp *replayer) step(js *journeyState) {
	r := &rp.rec
	js.lastLine = rp.lineNo
	if !js.hasStart && rp.hasTS {
		js.start, js.hasStart = rp.ts, true
	}
	s := JourneyStep{
		Line:     rp.lineNo,
		Action:   rp.names.get(r.action),
		Provider: rp.names.get(r.provider),
		Model:    rp.names.get(r.model),
		Error:    rp.names.get(r.errClass),
		Reason:   rp.names.get(r.reason),
	}
	if rp.hasTS && js.hasStart {
		s.Offset = time.Duration(rp.ts - js.start)
	}
	if r.machine != nil {
		s.Event = fsm.Event(rp.names.get(r.event))
		s.From = fsm.State(rp.names.get(r.from))
		s.To = fsm.State(rp.names.get(r.to))
	}
	s.Attempt, _ = parseInt(r.attempt)
	s.Status, _ = parseInt(r.status)
	s.UpstreamStatus, _ = parseInt(r.upstream)
	s.Wait, _ = parseDuration(r.wait)
	s.RetryAfter, _ = parseDuration(r.retryAfter)
	s.ProbeIn, _ = parseDuration(r.probeIn)
	s.Latency, _ = parseDuration(r.latency)
	js.steps = append(js.steps, s)
}

// end closes a journey at its terminal transition.
func (rp *replayer) end(js *journeyState) {
	r := &rp.rec
	req := &rp.rep.Requests
	status, _ := parseInt(r.status)
	outcome := requestTable.states[js.state]
	if outcome == fsm.Succeeded {
		req.Succeeded++
	} else {
		req.Failed++
		req.ByStatus[status]++
		if string(r.event) == string(fsm.EventReject) {
			req.Rejected++
		}
	}
	if js.partial {
		req.Partial++
	}
	req.Attempts[min(js.attempts, MaxAttemptsBucket)]++
	var latency time.Duration
	if !js.partial && js.hasStart && rp.hasTS {
		latency = time.Duration(rp.ts - js.start)
		rp.hist.add(latency)
	}
	delete(rp.open, js.id)
	rp.finished.add(js.id, rp.lineNo)
	rp.release(js, outcome, status, latency)
}

// unfinished closes a journey that will never end. why, when not empty, is
// reported (as a problem, or a warning with AllowIncomplete).
func (rp *replayer) unfinished(js *journeyState, why string, report bool) {
	req := &rp.rep.Requests
	req.Unfinished++
	if len(req.UnfinishedIDs) < 20 {
		req.UnfinishedIDs = append(req.UnfinishedIDs, js.id)
	}
	if report {
		p := Problem{Line: js.lastLine, Kind: ProblemUnfinished, Machine: fsm.KindRequest, ID: js.id,
			Reason: fmt.Sprintf("never finished: %s with it in state %s (received at line %d, last line %d)",
				why, requestTable.name(js.state), js.line, js.lastLine)}
		rp.record(js, p, rp.opts.AllowIncomplete)
	}
	delete(rp.open, js.id)
	rp.release(js, "", 0, 0)
}

// release hands a journey over if it is kept, or recycles it.
func (rp *replayer) release(js *journeyState, outcome fsm.State, status int, latency time.Duration) {
	keep := rp.opts.Journeys || rp.opts.RequestID != "" && js.id == rp.opts.RequestID
	if !keep && len(js.problems) > 0 && rp.problemJourneys < rp.opts.MaxProblemJourneys {
		rp.problemJourneys++
		keep = true
	}
	if !keep {
		if len(rp.free) < 1024 {
			rp.free = append(rp.free, js)
		}
		return
	}
	j := &Journey{
		RequestID: js.id,
		Line:      js.line,
		Model:     js.model,
		Outcome:   outcome,
		Status:    status,
		Attempts:  js.attempts,
		Latency:   latency,
		Partial:   js.partial,
		Steps:     js.steps,
		Problems:  js.problems,
	}
	if js.hasStart {
		j.Start = time.Unix(0, js.start).UTC()
	}
	if rp.opts.OnJourney != nil {
		rp.opts.OnJourney(j)
	} else {
		rp.rep.Journeys = append(rp.rep.Journeys, j)
	}
}

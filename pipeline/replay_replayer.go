package pipeline

import (
	"fmt"
	"slices"
	"time"

	"github.com/llm-gateway/gateway/fsm"
)

// replayer is the state of one Replay: the machines open at this point of
// the log, and the report being filled. Everything a line needs after it is
// read is copied out of it (and interned) here.
type replayer struct {
	opts ReplayOptions
	rep  *ReplayReport

	rec    logRecord
	lineNo int64
	text   []byte // the current line, for problem reports
	ts     int64  // its timestamp in Unix ns, when hasTS
	hasTS  bool

	firstTS, lastTS int64 // the earliest and latest timestamps, when seenTS
	seenTS          bool

	open     map[string]*journeyState // request journeys not yet ended
	finished finishedRing             // recently ended ones, to catch lines after the end
	breakers map[string]*breakerState
	started  bool // an action=start was seen: every breaker is known to be closed

	names           interner
	free            []*journeyState // ended journeys, for reuse
	hist            latencyHistogram
	problemJourneys int // problem journeys kept so far
}

// breakerState is one provider's breaker, re-driven.
type breakerState struct {
	state int8
	pend  pendingStep
}

func newReplayer(opts ReplayOptions) *replayer {
	if opts.MaxProblems <= 0 {
		opts.MaxProblems = 1000
	}
	if opts.MaxProblemJourneys == 0 {
		opts.MaxProblemJourneys = 20
	}
	return &replayer{
		opts: opts,
		rep: &ReplayReport{
			Providers: map[string]*ProviderSummary{},
			Requests: RequestSummary{
				ByStatus: map[int]int64{},
				Attempts: make([]int64, MaxAttemptsBucket+1),
			},
			Problems: []Problem{},
			Warnings: []Problem{},
		},
		open:     map[string]*journeyState{},
		finished: newFinishedRing(finishedWindow),
		breakers: map[string]*breakerState{},
		names:    interner{m: map[string]string{}},
	}
}

// apply replays one parsed journal line (in rp.rec).
func (rp *replayer) apply(text []byte) {
	r := &rp.rec
	rp.text = text
	rp.rep.JournalLine++
	rp.ts, rp.hasTS = parseTimestamp(r.ts)
	if rp.hasTS {
		if !rp.seenTS || rp.ts < rp.firstTS {
			rp.firstTS = rp.ts
		}
		if !rp.seenTS || rp.ts > rp.lastTS {
			rp.lastTS = rp.ts
		}
		rp.seenTS = true
	}
	if r.machine != nil {
		rp.rep.Transitions++
		rp.transition()
		return
	}
	switch string(r.action) {
	case "received":
		if rp.needID(r.requestID, "request_id") {
			rp.received()
		}
	case "failed", "skipped":
		if rp.needID(r.requestID, "request_id") {
			rp.note()
		}
	case "start":
		rp.restart()
	default:
		if isTransitionAction(r.action) {
			rp.problem(nil, ProblemMalformed, "", "", fmt.Sprintf("action=%s is a transition, but the line has no machine, event, from and to", r.action))
		}
		// Any other action is an operational line of the journal: no
		// machine hangs on it.
	}
}

func (rp *replayer) needID(id []byte, key string) bool {
	if len(id) == 0 {
		rp.problem(nil, ProblemMalformed, "", "", fmt.Sprintf("action=%s without %s", rp.rec.action, key))
		return false
	}
	return true
}

// transition checks one transition line and dispatches it to its machine.
func (rp *replayer) transition() {
	r := &rp.rec
	var missing []string
	for _, f := range []struct {
		name string
		v    []byte
	}{{"event", r.event}, {"from", r.from}, {"to", r.to}} {
		if len(f.v) == 0 {
			missing = append(missing, f.name)
		}
	}
	switch string(r.machine) {
	case string(fsm.KindRequest):
		if len(r.requestID) == 0 {
			missing = append(missing, "request_id")
		}
	case string(fsm.KindBreaker):
		if len(r.provider) == 0 {
			missing = append(missing, "provider")
		}
	default:
		rp.problem(nil, ProblemMalformed, "", "", fmt.Sprintf("unknown machine %q", r.machine))
		return
	}
	if len(missing) > 0 {
		rp.problem(nil, ProblemMalformed, "", "", fmt.Sprintf("a %s transition without %v", r.machine, missing))
		return
	}
	if string(r.machine) == string(fsm.KindRequest) {
		rp.requestTransition()
	} else {
		rp.breakerTransition()
	}
}

// check re-drives one step of a machine of table t in state cur from the
// logged line: the event must be legal in cur, the logged from must be cur,
// the logged to must be where the table goes, and the action must name the
// event. It returns the state to continue from (on a problem, the logged to,
// so that one bad line does not condemn every line after it), and the first
// problem's kind with every reason found.
//
// pend remembers the machine's last refused step, so that two swapped lines
// are named as such, and replay carries on from where both lead.
func (rp *replayer) check(t *replayTable, cur int8, pend *pendingStep) (next int8, kind ProblemKind, reason string) {
	r := &rp.rec
	ev, from, to := t.event(r.event), t.state(r.from), t.state(r.to)
	var want int8 = -1
	if ev >= 0 {
		want = t.next[cur][ev]
	}
	if ev >= 0 && want >= 0 && from == cur && to == want && string(r.action) == t.actions[ev] {
		pend.set = false
		return want, "", "" // the fast path: a clean step
	}
	if pend.set && ev >= 0 && from >= 0 && to >= 0 &&
		from == pend.before && t.next[from][ev] == to &&
		pend.from == to && t.next[to][pend.event] == pend.to {
		pend.set = false
		return pend.to, ProblemFromMismatch, fmt.Sprintf("out of order: this line belongs before line %d (the two are swapped)", pend.line)
	}
	*pend = pendingStep{set: ev >= 0 && from >= 0 && to >= 0, line: rp.lineNo, before: cur, event: ev, from: from, to: to}
	add := func(k ProblemKind, format string, args ...any) {
		if kind == "" {
			kind = k
		} else {
			reason += "; "
		}
		reason += fmt.Sprintf(format, args...)
	}
	switch {
	case ev < 0:
		add(ProblemIllegalEvent, "unknown event %q for the %s machine", r.event, t.def.Kind)
	case want < 0 && t.terminal(cur):
		add(ProblemIllegalEvent, "event %q in terminal state %q", r.event, t.name(cur))
	case want < 0:
		add(ProblemIllegalEvent, "event %q is not allowed in state %q", r.event, t.name(cur))
	}
	if from != cur {
		add(ProblemFromMismatch, "logged from=%s but the replayed machine is in %s (a line missing or out of order?)", r.from, t.name(cur))
	}
	// The destination is judged from the replayed state when the event is
	// legal there, else from the logged one.
	base, dest := cur, want
	if dest < 0 && ev >= 0 && from >= 0 {
		base, dest = from, t.next[from][ev]
	}
	switch {
	case to < 0:
		add(ProblemToMismatch, "logged to=%s is not a state of the %s machine", r.to, t.def.Kind)
	case dest >= 0 && to != dest:
		add(ProblemToMismatch, "logged to=%s but the table takes %s --%s--> %s", r.to, t.name(base), r.event, t.name(dest))
	}
	if ev >= 0 && string(r.action) != t.actions[ev] {
		add(ProblemActionMismatch, "action=%s does not match event=%s (want action=%s)", r.action, r.event, t.actions[ev])
	}
	switch {
	case to >= 0:
		next = to
	case want >= 0:
		next = want
	default:
		next = cur
	}
	return next, kind, reason
}

// pendingStep is a machine's last refused step, kept to recognise a swap.
type pendingStep struct {
	set             bool
	line            int64
	before          int8 // the replayed state when it was refused
	event, from, to int8
}

// breakerTransition re-drives one provider's breaker.
func (rp *replayer) breakerTransition() {
	r := &rp.rec
	b := rp.breakers[string(r.provider)]
	if b == nil {
		b = &breakerState{state: breakerTable.initial}
		// Before the first start line the log may begin mid-run, with the
		// breaker in any state: when that is allowed, trust its first line.
		if !rp.started && rp.opts.AllowIncomplete {
			if s := breakerTable.state(r.from); s >= 0 {
				b.state = s
			}
		}
		rp.breakers[rp.names.get(r.provider)] = b
	}
	next, kind, reason := rp.check(breakerTable, b.state, &b.pend)
	if kind != "" {
		rp.problem(nil, kind, fsm.KindBreaker, string(r.provider), reason)
	}
	b.state = next
	ps := rp.provider(r.provider)
	switch string(r.event) {
	case string(fsm.EventTrip):
		ps.Trips++
	case string(fsm.EventProbe):
		ps.Probes++
	case string(fsm.EventRecover):
		ps.Recovers++
	case string(fsm.EventReopen):
		ps.Reopens++
	}
}

// restart handles action=start: the orchestrator (re)started, so every
// breaker is closed again and every request still open never finished.
func (rp *replayer) restart() {
	rp.rep.Restarts++
	rp.started = true
	for _, b := range rp.breakers {
		b.state = breakerTable.initial
	}
	rp.endAllUnfinished(fmt.Sprintf("the orchestrator restarted at line %d", rp.lineNo))
}

// finish ends the replay at the end of the log.
func (rp *replayer) finish() {
	rp.endAllUnfinished("the log ends")
	rp.rep.Latency = rp.hist.summary()
	if rp.seenTS {
		rp.rep.First, rp.rep.Last = time.Unix(0, rp.firstTS).UTC(), time.Unix(0, rp.lastTS).UTC()
	}
}

// endAllUnfinished ends every open journey as unfinished, in the order they
// began, so that reports are reproducible.
func (rp *replayer) endAllUnfinished(why string) {
	if len(rp.open) == 0 {
		return
	}
	open := make([]*journeyState, 0, len(rp.open))
	for _, js := range rp.open {
		open = append(open, js)
	}
	slices.SortFunc(open, func(a, b *journeyState) int { return int(a.line - b.line) })
	for _, js := range open {
		rp.unfinished(js, why, true)
	}
}

// problem records a problem with the current line. js, when the line belongs
// to a journey, gets a copy.
func (rp *replayer) problem(js *journeyState, kind ProblemKind, machine fsm.Kind, id, reason string) {
	p := Problem{Line: rp.lineNo, Kind: kind, Machine: machine, ID: id, Reason: reason, Text: cut(rp.text)}
	rp.record(js, p, false)
}

// warn records a warning about the current line.
func (rp *replayer) warn(kind ProblemKind, machine fsm.Kind, id, reason string) {
	rp.record(nil, Problem{Line: rp.lineNo, Kind: kind, Machine: machine, ID: id, Reason: reason, Text: cut(rp.text)}, true)
}

func (rp *replayer) record(js *journeyState, p Problem, warning bool) {
	if warning {
		rp.rep.WarningCount++
		if len(rp.rep.Warnings) < rp.opts.MaxProblems {
			rp.rep.Warnings = append(rp.rep.Warnings, p)
		}
	} else {
		rp.rep.ProblemCount++
		if len(rp.rep.Problems) < rp.opts.MaxProblems {
			rp.rep.Problems = append(rp.rep.Problems, p)
		}
	}
	if js != nil && len(js.problems) < 10 {
		js.problems = append(js.problems, p)
	}
}

// provider returns the summary of the named provider, creating it.
func (rp *replayer) provider(name []byte) *ProviderSummary {
	if ps := rp.rep.Providers[string(name)]; ps != nil {
		return ps
	}
	ps := &ProviderSummary{Failures: map[string]int64{}}
	rp.rep.Providers[rp.names.get(name)] = ps
	return ps
}

// providerNamed is provider for an interned name.
func (rp *replayer) providerNamed(name string) *ProviderSummary {
	ps := rp.rep.Providers[name]
	if ps == nil {
		ps = &ProviderSummary{Failures: map[string]int64{}}
		rp.rep.Providers[name] = ps
	}
	return ps
}

// cut copies a line for a report, at most 200 bytes of it.
func cut(b []byte) string { return truncate(string(b), 200) }

// interner keeps one copy of each short, recurring value (providers, models,
// actions, error classes, reasons) so that journeys share them. Past a bound
// it stops growing and copies instead: memory stays bounded whatever the log.
type interner struct{ m map[string]string }

const maxInterned = 4096

func (in *interner) get(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := in.m[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(in.m) < maxInterned && len(b) <= 64 {
		in.m[s] = s
	}
	return s
}

// finishedRing remembers the requests that ended most recently (and at which
// line), so that a line logged after a request's end is named as such. It
// holds a fixed window, not every request ever seen; a line for a request
// that ended before the window reads as a journey without its received line,
// which is a problem too.
type finishedRing struct {
	size  int
	lines map[string]int64
	ring  []finishedEntry
	next  int
}

type finishedEntry struct {
	id   string
	line int64
}

// finishedWindow is how many ended requests replay remembers.
const finishedWindow = 1 << 16

func newFinishedRing(n int) finishedRing {
	return finishedRing{size: n, lines: make(map[string]int64), ring: make([]finishedEntry, 0, min(n, 1024))}
}

func (f *finishedRing) add(id string, line int64) {
	e := finishedEntry{id, line}
	if len(f.ring) < f.size {
		f.ring = append(f.ring, e)
	} else {
		old := f.ring[f.next]
		if f.lines[old.id] == old.line {
			delete(f.lines, old.id)
		}
		f.ring[f.next] = e
		f.next = (f.next + 1) % f.size
	}
	f.lines[id] = line
}

func (f *finishedRing) get(id []byte) (int64, bool) {
	line, ok := f.lines[string(id)]
	return line, ok
}

package pipeline

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/llm-gateway/gateway/fsm"
)

// Replay reads a journal (text or JSON lines, mixed with unrelated lines) and
// re-drives a fresh machine for every request journey and every breaker from
// the logged events, checking each step against the fsm tables (DESIGN §6):
// the event is legal in the replayed state, the logged from is that state,
// the logged to is where the table goes. It also checks that every request
// ends, and that nothing follows its end.
//
// It streams: memory grows with the requests open at once, not with the
// size of the log (a request's state is dropped at its terminal transition;
// the report keeps counters and a bounded histogram). The returned error is
// an I/O error only; what the log itself gets wrong is in the report, whose
// Err method says whether it replayed cleanly.
//
// Replay is safe for concurrent use: each call has its own state, and the
// tables it checks against are immutable.
func Replay(r io.Reader, opts ReplayOptions) (*ReplayReport, error) {
	rp := newReplayer(opts)
	err := rp.read(r)
	rp.finish()
	return rp.rep, err
}

// ReplayOptions tune Replay. The zero value checks everything and keeps no
// journey but those of problem requests.
type ReplayOptions struct {
	// RequestID keeps the journeys of this request (every journey: a client
	// may reuse an ID). Every other request is still checked.
	RequestID string
	// Journeys keeps every journey. Without OnJourney the report holds them
	// all, so memory then grows with the log: meant for tests and small logs.
	Journeys bool
	// OnJourney, when set, receives each kept journey as it ends (in the
	// order they end) instead of the report keeping it. It may keep the
	// journey.
	OnJourney func(*Journey)
	// AllowIncomplete accepts a log cut at either end: requests that never
	// finish (at the end of the log or at a restart) and journeys whose
	// received line came before the log begins are reported as warnings,
	// not problems.
	AllowIncomplete bool
	// MaxProblems bounds the problems and the warnings kept in detail
	// (each); the rest are only counted. Zero means 1000.
	MaxProblems int
	// MaxProblemJourneys bounds the journeys of problem requests kept
	// besides those asked for. Zero means 20; negative keeps none.
	MaxProblemJourneys int
}

// ReplayReport is what Replay found: problems, warnings, the summary, and
// the journeys it was asked to keep. It is plain data, owned by the caller
// once Replay returns.
type ReplayReport struct {
	Lines       int64 `json:"lines"`       // lines read
	Bytes       int64 `json:"bytes"`       // bytes read
	JournalLine int64 `json:"journal"`     // lines that are journal lines
	Transitions int64 `json:"transitions"` // of which transitions
	Ignored     int64 `json:"ignored"`     // lines that are not journal lines (or carry no action)
	// IgnoredSamples are the first few ignored lines, to show what they are.
	IgnoredSamples []LineSample `json:"ignored_samples,omitempty"`
	Restarts       int64        `json:"restarts"` // action=start lines
	// First and Last are the earliest and latest timestamps read.
	First time.Time `json:"first,omitzero"`
	Last  time.Time `json:"last,omitzero"`

	Requests  RequestSummary              `json:"requests"`
	Latency   LatencySummary              `json:"latency"`
	Providers map[string]*ProviderSummary `json:"providers"`

	// Problems make the log fail replay; Warnings do not. ProblemCount and
	// WarningCount count them all, beyond the ones kept in detail.
	Problems     []Problem `json:"problems"`
	ProblemCount int64     `json:"problem_count"`
	Warnings     []Problem `json:"warnings"`
	WarningCount int64     `json:"warning_count"`

	// Journeys are the kept journeys (when no OnJourney was given), in the
	// order they ended.
	Journeys []*Journey `json:"journeys,omitempty"`
}

// Err is nil when the log replayed cleanly; otherwise it lists the problems.
func (r *ReplayReport) Err() error {
	if r.ProblemCount == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "replay: %d problem(s)", r.ProblemCount)
	for _, p := range r.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	if n := r.ProblemCount - int64(len(r.Problems)); n > 0 {
		fmt.Fprintf(&b, "\n  … and %d more", n)
	}
	return errors.New(b.String())
}

// LineSample is one line of the log, by number, its text cut to 200 bytes.
type LineSample struct {
	Line int64  `json:"line"`
	Text string `json:"text"`
}

// ProblemKind says what is wrong with a line or a journey.
type ProblemKind string

// The problems.
const (
	// The logged event is unknown to the machine, or the table does not
	// allow it in the replayed state.
	ProblemIllegalEvent ProblemKind = "illegal_event"
	// The logged from is not the replayed state: a line is missing or out
	// of order.
	ProblemFromMismatch ProblemKind = "from_mismatch"
	// The logged to is not where the table goes from the logged state.
	ProblemToMismatch ProblemKind = "to_mismatch"
	// The action does not name the logged event.
	ProblemActionMismatch ProblemKind = "action_mismatch"
	// A line for a request after its terminal transition.
	ProblemAfterTerminal ProblemKind = "after_terminal"
	// A transition for a request whose received line is not in the log.
	ProblemNoReceived ProblemKind = "no_received"
	// A received line for a request whose previous journey is unfinished.
	ProblemDuplicateReceived ProblemKind = "duplicate_received"
	// A request never reached a terminal state (at the end of the log, or
	// at a restart).
	ProblemUnfinished ProblemKind = "unfinished"
	// A transition line without machine, event, from, to or the machine's
	// ID; or of an unknown machine.
	ProblemMalformed ProblemKind = "malformed"
)

// The warnings.
const (
	// The last line has no newline: a crash cut it. It is applied only if
	// it still parses as a whole journal line.
	WarningTruncated ProblemKind = "truncated_line"
	// A line cut short by a crash, with the restarted process's first line
	// appended to it; the cut part is dropped and the rest replayed.
	WarningSpliced ProblemKind = "spliced_line"
)

// Problem is one thing wrong with the log, tied to a line.
type Problem struct {
	Line    int64       `json:"line"`
	Kind    ProblemKind `json:"kind"`
	Machine fsm.Kind    `json:"machine,omitempty"`
	ID      string      `json:"id,omitempty"` // the request ID, or the breaker's provider
	Reason  string      `json:"reason"`
	Text    string      `json:"text,omitempty"` // the line, cut to 200 bytes
}

func (p Problem) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "line %d: %s", p.Line, p.Kind)
	if p.ID != "" {
		fmt.Fprintf(&b, ": %s %s", p.Machine, Printable(p.ID))
	}
	b.WriteString(": ")
	b.WriteString(Printable(p.Reason))
	if p.Text != "" {
		b.WriteString("\n      ")
		b.WriteString(Printable(p.Text))
	}
	return b.String()
}

// Printable is s for a terminal: s itself when every rune prints, else s
// quoted with Go's escapes. A replayed log is anyone's text (a model name is
// the client's), and an escape sequence or a line feed in it must not reach
// the operator's terminal as such.
func Printable(s string) string {
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) {
		return strconv.Quote(s)
	}
	return s
}

// RequestSummary counts request journeys by outcome.
type RequestSummary struct {
	Received   int64         `json:"received"`  // journeys begun by a received line
	Succeeded  int64         `json:"succeeded"` // ended in succeeded
	Failed     int64         `json:"failed"`    // ended in failed (rejected included)
	Rejected   int64         `json:"rejected"`  // of which rejected before any attempt
	Unfinished int64         `json:"unfinished"`
	Partial    int64         `json:"partial"` // journeys without their received line
	ByStatus   map[int]int64 `json:"failed_by_status"`
	// Attempts counts finished journeys by the provider calls they made;
	// the last entry counts that many or more.
	Attempts []int64 `json:"attempts"`
	// UnfinishedIDs are the first few requests that never finished.
	UnfinishedIDs []string `json:"unfinished_ids,omitempty"`
}

// MaxAttemptsBucket is the last entry of RequestSummary.Attempts.
const MaxAttemptsBucket = 10

// LatencySummary is the distribution of received → terminal times of the
// journeys that have both, from a log-bucket histogram (within 1 %).
type LatencySummary struct {
	Count int64         `json:"count"`
	Min   time.Duration `json:"min"`
	P50   time.Duration `json:"p50"`
	P90   time.Duration `json:"p90"`
	P99   time.Duration `json:"p99"`
	Max   time.Duration `json:"max"`
	Mean  time.Duration `json:"mean"`
}

// ProviderSummary counts what happened at one provider.
type ProviderSummary struct {
	Attempts     int64            `json:"attempts"`
	Successes    int64            `json:"successes"`
	Failures     map[string]int64 `json:"failures"` // by error class
	Retries      int64            `json:"retries"`
	FailoversOut int64            `json:"failovers_out"` // failovers away from it
	FailoversIn  int64            `json:"failovers_in"`  // failovers to it
	Skipped      int64            `json:"skipped"`       // passed over: breaker open, or the request unsupported
	Trips        int64            `json:"trips"`
	Probes       int64            `json:"probes"`
	Recovers     int64            `json:"recovers"`
	Reopens      int64            `json:"reopens"`
}

// Journey is one request's journey: every line of it, from received to its
// terminal state.
type Journey struct {
	RequestID string    `json:"request_id"`
	Line      int64     `json:"line"` // its received line (or its first line)
	Start     time.Time `json:"start,omitzero"`
	Model     string    `json:"model,omitempty"`
	// Outcome is the terminal state, or "" when the journey never ended.
	Outcome  fsm.State     `json:"outcome"`
	Status   int           `json:"status,omitempty"`
	Attempts int           `json:"attempts"`
	Latency  time.Duration `json:"latency,omitempty"` // received → terminal
	Partial  bool          `json:"partial,omitempty"` // its received line is not in the log
	Steps    []JourneyStep `json:"steps"`
	Problems []Problem     `json:"problems,omitempty"`
}

// JourneyStep is one line of a journey. Offset is from the received line's
// timestamp (or the journey's first). Zero fields were not logged.
type JourneyStep struct {
	Line           int64         `json:"line"`
	Offset         time.Duration `json:"offset"`
	Action         string        `json:"action"`
	Event          fsm.Event     `json:"event,omitempty"`
	From           fsm.State     `json:"from,omitempty"`
	To             fsm.State     `json:"to,omitempty"`
	Provider       string        `json:"provider,omitempty"`
	Model          string        `json:"model,omitempty"`
	Attempt        int           `json:"attempt,omitempty"`
	Error          string        `json:"error,omitempty"`
	Status         int           `json:"status,omitempty"`
	UpstreamStatus int           `json:"upstream_status,omitempty"`
	Wait           time.Duration `json:"wait,omitempty"`
	RetryAfter     time.Duration `json:"retry_after,omitempty"`
	ProbeIn        time.Duration `json:"probe_in,omitempty"`
	Latency        time.Duration `json:"latency,omitempty"`
	Reason         string        `json:"reason,omitempty"`
}

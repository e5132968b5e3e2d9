package mock

import (
	"sync"
	"sync/atomic"
)

// Provider names, as used in fault rules, stats and the log.
const (
	ProviderOpenAI    = "openai"
	ProviderAnthropic = "anthropic"
	ProviderAny       = "*" // a fault rule for both providers
)

// Outcome names besides the fault names: how a request was answered.
const (
	OutcomeOK      = "ok"      // a success, streams included
	OutcomeInvalid = "invalid" // rejected by validation (400, 404, 405)
	OutcomeAuth    = "auth"    // rejected for its key (401)
)

type provider uint8

const (
	openai provider = iota
	anthropic
	numProviders
)

var providerNames = [numProviders]string{ProviderOpenAI, ProviderAnthropic}

func (p provider) String() string { return providerNames[p] }

type outcome uint8

const (
	outcomeOK outcome = iota
	outcomeInvalid
	outcomeAuth
	outcomeTimeout
	outcomeRateLimit
	outcomeServerError
	outcomeOverloaded
	outcomeMalformed
	outcomeReset
	outcomeHang
	outcomeStreamCut
	outcomeStreamStall
	outcomeStreamTruncate
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	OutcomeOK, OutcomeInvalid, OutcomeAuth,
	FaultTimeout, FaultRateLimit, FaultServerError, FaultOverloaded,
	FaultMalformed, FaultReset, FaultHang, FaultStreamCut, FaultStreamStall, FaultStreamTruncate,
}

func (o outcome) String() string { return outcomeNames[o] }

// Stats is a snapshot of the counters: per provider, how many requests came
// in and how each was answered. It marshals to
//
//	{"anthropic":{"requests":N,"outcomes":{"auth":N,…}},"openai":{…}}
//
// with both providers and every outcome always present, and keys sorted (it
// holds counts only, so two reads with no traffic between are identical).
type Stats map[string]ProviderStats

// ProviderStats counts one provider's requests.
type ProviderStats struct {
	Requests int64            `json:"requests"`
	Outcomes map[string]int64 `json:"outcomes"`
}

// Requests is how many requests the provider received.
func (s Stats) Requests(provider string) int64 { return s[provider].Requests }

// Outcome is how many of the provider's requests were answered with outcome
// (OutcomeOK, OutcomeInvalid, OutcomeAuth, or a fault name).
func (s Stats) Outcome(provider, outcome string) int64 { return s[provider].Outcomes[outcome] }

// counters are plain atomics: they are bumped on every request and must not
// serialise the hot path.
type counters struct {
	requests [numProviders]atomic.Int64
	outcomes [numProviders][numOutcomes]atomic.Int64
}

func (c *counters) add(p provider, o outcome) {
	c.requests[p].Add(1)
	c.outcomes[p][o].Add(1)
}

func (c *counters) snapshot() Stats {
	st := make(Stats, numProviders)
	for p := range numProviders {
		ps := ProviderStats{Requests: c.requests[p].Load(), Outcomes: make(map[string]int64, numOutcomes)}
		for o := range numOutcomes {
			ps.Outcomes[outcomeNames[o]] = c.outcomes[p][o].Load()
		}
		st[providerNames[p]] = ps
	}
	return st
}

func (c *counters) reset() {
	for p := range numProviders {
		c.requests[p].Store(0)
		for o := range numOutcomes {
			c.outcomes[p][o].Store(0)
		}
	}
}

// LogEntry is one request as the mock received it, for tests that check what
// the gateway actually sent.
type LogEntry struct {
	Provider  string `json:"provider"`
	RequestID string `json:"request_id"` // the incoming X-Request-ID, or empty
	Model     string `json:"model"`
	Stream    bool   `json:"stream"`
	Outcome   string `json:"outcome"`
	Body      string `json:"body"` // the request body, truncated to MaxLogBody bytes
}

const (
	// LogSize is how many requests the log keeps; older ones are dropped.
	LogSize = 1000
	// MaxLogBody is how much of each request body the log keeps.
	MaxLogBody = 64 << 10
)

// logSlot keeps its own byte buffers, reused when the ring wraps, so logging
// a request allocates nothing once the ring has been around once.
type logSlot struct {
	provider  provider
	outcome   outcome
	stream    bool
	requestID []byte
	model     []byte
	body      []byte
}

// requestLog is a ring of the last LogSize requests.
type requestLog struct {
	mu    sync.Mutex // guards slots, next and full
	slots []logSlot
	next  int
	full  bool
}

func (l *requestLog) add(p provider, o outcome, stream bool, requestID []byte, model string, body []byte) {
	if len(body) > MaxLogBody {
		body = body[:MaxLogBody]
	}
	l.mu.Lock()
	if l.slots == nil {
		l.slots = make([]logSlot, LogSize)
	}
	s := &l.slots[l.next]
	s.provider, s.outcome, s.stream = p, o, stream
	s.requestID = append(s.requestID[:0], requestID...)
	s.model = append(s.model[:0], model...)
	s.body = append(s.body[:0], body...)
	l.next++
	if l.next == len(l.slots) {
		l.next, l.full = 0, true
	}
	l.mu.Unlock()
}

// entries returns the log oldest first.
func (l *requestLog) entries() []LogEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, first := l.next, 0
	if l.full {
		n, first = len(l.slots), l.next
	}
	out := make([]LogEntry, 0, n)
	for i := range n {
		s := &l.slots[(first+i)%max(len(l.slots), 1)]
		out = append(out, LogEntry{
			Provider:  s.provider.String(),
			RequestID: string(s.requestID),
			Model:     string(s.model),
			Stream:    s.stream,
			Outcome:   s.outcome.String(),
			Body:      string(s.body),
		})
	}
	return out
}

func (l *requestLog) reset() {
	l.mu.Lock()
	l.slots, l.next, l.full = nil, 0, false
	l.mu.Unlock()
}

package pipeline

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/llm-gateway/gateway/fsm"
	"github.com/llm-gateway/gateway/providers"
)

// Metrics is the gateway's Prometheus instrumentation, on a private registry
// (never the global one, so two servers in one process, as in tests, do not
// collide). docs/metrics.md lists every series.
//
// The hot path is cheap by construction: every label child a request can
// touch is resolved once (at start for the known label sets, on first use
// for the rest) and kept in arrays or in copy-on-write maps keyed by values
// the caller already has, so a request builds no label string and takes no
// lock. Breaker state is read from the breakers at scrape time instead of
// being tracked on the way.
//
// A nil *Metrics records nothing, so engines built without one (unit tests)
// need no stub. It is safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	requests        counterCache[requestKey]
	transitions     counterCache[transitionKey]
	steps           [2][]prometheus.Counter   // per machine (machineOf), per move (Definition.Steps)
	requestDuration [2][2]prometheus.Observer // [succeeded?][stream?]
	inFlight        atomic.Int64              // exported as a GaugeFunc; Shutdown reads it too
	streamsInFlight atomic.Int64
	panics          prometheus.Counter
	authFailures    [2][2]prometheus.Counter // [admin?][invalid?]
	transportErrors counterCache[int]
	connRejections  [2]prometheus.Counter // [per ip?]

	// Per provider, fixed at start: the engine and the hook look a provider
	// up by the name they already hold.
	providers map[string]*providerMetrics
	attempts  *prometheus.CounterVec // for providers unknown at start (none in practice)
}

// providerMetrics are one provider's pre-resolved children.
type providerMetrics struct {
	attempts        [numResults]prometheus.Counter
	attemptDuration [2]prometheus.Observer // [failed?]
	budgetExhausted prometheus.Counter
	backoffSeconds  prometheus.Counter
}

// Attempt results: success and the error classes of DESIGN §4, as indexes.
const (
	resultSuccess = iota
	resultTimeout
	resultServer
	resultMalformed
	resultOverloaded
	resultRateLimited
	resultConnect
	resultAuth
	resultInvalid
	resultCanceled
	resultOther
	numResults
)

var resultNames = [numResults]string{"success", "timeout", "server", "malformed", "overloaded",
	"rate_limited", "connect", "auth", "invalid", "canceled", "other"}

func resultOf(err error) int {
	if err == nil {
		return resultSuccess
	}
	switch providers.ClassOf(err) {
	case providers.ClassTimeout:
		return resultTimeout
	case providers.ClassServer:
		return resultServer
	case providers.ClassMalformed:
		return resultMalformed
	case providers.ClassOverloaded:
		return resultOverloaded
	case providers.ClassRateLimited:
		return resultRateLimited
	case providers.ClassConnect:
		return resultConnect
	case providers.ClassAuth:
		return resultAuth
	case providers.ClassInvalid:
		return resultInvalid
	case providers.ClassCanceled:
		return resultCanceled
	}
	return resultOther
}

type requestKey struct {
	outcome fsm.State
	status  int
	reason  string
}

type transitionKey struct {
	machine fsm.Kind
	event   fsm.Event
	from    fsm.State
	to      fsm.State
}

// Latency buckets, in seconds: from a fast rejection to a request that used
// its whole default deadline.
var (
	requestBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}
	attemptBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
)

// NewMetrics registers the gateway's series for the named providers, and the
// Go runtime and process collectors, on a new registry. breakers (which may
// be nil) are read at scrape time; conns (which may be nil) reports the open
// client connections.
func NewMetrics(providerNames []string, breakers map[string]*providers.Breaker, conns func() int) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg, providers: make(map[string]*providerMetrics, len(providerNames))}
	f := registrar{reg}

	reqs := f.counterVec("gateway_requests_total",
		"Chat completion requests answered, by outcome (the request machine's terminal state), HTTP status and reason.",
		"outcome", "status", "reason")
	m.requests.init(reqs, func(k requestKey) []string {
		return []string{string(k.outcome), strconv.Itoa(k.status), k.reason}
	})
	m.requests.get(requestKey{fsm.Succeeded, 200, ""})

	trs := f.counterVec("gateway_transitions_total",
		"Transitions of the request and breaker machines, by machine, event, from and to state.",
		"machine", "event", "from", "to")
	m.transitions.init(trs, func(k transitionKey) []string {
		return []string{string(k.machine), string(k.event), string(k.from), string(k.to)}
	})
	for _, d := range fsm.Definitions() {
		steps := make([]prometheus.Counter, len(d.Steps()))
		for i, st := range d.Steps() {
			steps[i] = m.transitions.get(transitionKey{d.Kind, st.Event, st.From, st.To})
		}
		k, _ := machineOf(d.Kind)
		m.steps[k] = steps
	}

	dur := f.histogramVec("gateway_request_duration_seconds",
		"Time from a chat completion request's arrival to the end of its answer (for a stream, its last byte), by outcome and whether it streamed.",
		requestBuckets, "outcome", "stream")
	for i, outcome := range []fsm.State{fsm.Failed, fsm.Succeeded} {
		for j, stream := range []string{"false", "true"} {
			m.requestDuration[i][j] = dur.WithLabelValues(string(outcome), stream)
		}
	}
	f.gaugeFunc("gateway_requests_in_flight", "Chat completion requests being served, streams included.",
		func() float64 { return float64(m.inFlight.Load()) })
	f.gaugeFunc("gateway_streams_in_flight", "Streamed answers flowing to clients.",
		func() float64 { return float64(m.streamsInFlight.Load()) })
	m.panics = f.counter("gateway_panics_total", "Panics recovered: a handler's answered with a 500, a begun stream's ended with an error event.")

	auth := f.counterVec("gateway_auth_failures_total",
		"Requests refused by gateway auth (401), by scope (api: /v1/*; admin: /admin/* and /metrics) and reason (missing or invalid key).",
		"scope", "reason")
	for i, scope := range []string{"api", "admin"} {
		for j, reason := range []string{"missing", "invalid"} {
			m.authFailures[i][j] = auth.WithLabelValues(scope, reason)
		}
	}
	te := f.counterVec("gateway_transport_errors_total",
		"Requests fasthttp could not hand to a handler (unreadable, too slow, headers or body over the ceiling), by the status answered.",
		"status")
	m.transportErrors.init(te, func(s int) []string { return []string{strconv.Itoa(s)} })
	cr := f.counterVec("gateway_connections_rejected_total",
		"Client connections refused at accept, by the limit they hit (max_conns or max_conns_per_ip).", "limit")
	m.connRejections[0] = cr.WithLabelValues("max_conns")
	m.connRejections[1] = cr.WithLabelValues("max_conns_per_ip")
	if conns != nil {
		f.gaugeFunc("gateway_connections_open", "Client connections open now.", func() float64 { return float64(conns()) })
	}

	m.attempts = f.counterVec("gateway_attempts_total",
		"Provider calls, by provider and result (success or the error class of DESIGN §4).", "provider", "result")
	adur := f.histogramVec("gateway_attempt_duration_seconds",
		"Duration of one provider call (for a stream, until its first chunk), by provider and outcome (success or error).",
		attemptBuckets, "provider", "outcome")
	budget := f.counterVec("gateway_retry_budget_exhausted_total",
		"Retries refused because the provider's retry budget was spent.", "provider")
	backoff := f.counterVec("gateway_backoff_seconds_total",
		"Backoff time started before retrying a provider (the waits of retry transitions), in seconds.", "provider")
	for _, name := range providerNames {
		pm := &providerMetrics{
			attemptDuration: [2]prometheus.Observer{adur.WithLabelValues(name, "success"), adur.WithLabelValues(name, "error")},
			budgetExhausted: budget.WithLabelValues(name),
			backoffSeconds:  backoff.WithLabelValues(name),
		}
		for i := range pm.attempts {
			pm.attempts[i] = m.attempts.WithLabelValues(name, resultNames[i])
		}
		m.providers[name] = pm
	}

	if breakers != nil {
		reg.MustRegister(&breakerCollector{names: providerNames, breakers: breakers})
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the private registry, for tests and embedding.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format (or OpenMetrics
// or protobuf, as the scraper negotiates, gzipped when it asks) through
// promhttp, adapted to fasthttp. A scrape is rare next to requests, so the
// adaptor's copying does not matter.
func (m *Metrics) Handler() fasthttp.RequestHandler {
	return fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:          m.reg, // counts its own errors: promhttp_metric_handler_errors_total
		EnableOpenMetrics: true,
	}))
}

// transition counts one transition of any machine; it runs in Server.observe,
// the one hook every machine reports through, with the machine's (and for a
// breaker, the breaker's) lock held.
func (m *Metrics) transition(t fsm.Transition) {
	if m == nil {
		return
	}
	m.transitionCounter(t).Inc()
	if t.Machine != fsm.KindRequest {
		return
	}
	switch t.Event {
	case fsm.EventRetry:
		if pm := m.providers[t.Provider]; pm != nil {
			pm.backoffSeconds.Add(t.Wait.Seconds())
		}
	case fsm.EventSucceed, fsm.EventGiveUp, fsm.EventReject:
		m.requests.get(requestKey{t.To, t.Status, t.Reason}).Inc()
	}
}

// transitionCounter finds t's counter by its Step, pre-resolved at start,
// instead of hashing its four names; a record without a Step, or whose Step
// does not name its move, is looked up by name.
func (m *Metrics) transitionCounter(t fsm.Transition) prometheus.Counter {
	k, d := machineOf(t.Machine)
	if i, ok := d.StepOf(t); ok {
		return m.steps[k][i]
	}
	return m.transitions.get(transitionKey{t.Machine, t.Event, t.From, t.To})
}

// requestBegan counts a chat completion request in flight.
func (m *Metrics) requestBegan() {
	if m != nil {
		m.inFlight.Add(1)
	}
}

// requestEnded takes a request out of flight once its answer is complete and
// records how long it took.
func (m *Metrics) requestEnded(succeeded, stream bool, d time.Duration) {
	if m == nil {
		return
	}
	m.inFlight.Add(-1)
	m.requestDuration[b2i(succeeded)][b2i(stream)].Observe(d.Seconds())
}

func (m *Metrics) streamBegan() {
	if m != nil {
		m.streamsInFlight.Add(1)
	}
}

func (m *Metrics) streamEnded() {
	if m != nil {
		m.streamsInFlight.Add(-1)
	}
}

// inFlightNow is the number of chat completion requests being served.
func (m *Metrics) inFlightNow() int64 {
	if m == nil {
		return 0
	}
	return m.inFlight.Load()
}

// streamsNow is the number of streams flowing.
func (m *Metrics) streamsNow() int64 {
	if m == nil {
		return 0
	}
	return m.streamsInFlight.Load()
}

// attempt records one provider call's result and duration.
func (m *Metrics) attempt(provider string, err error, d time.Duration) {
	if m == nil {
		return
	}
	r := resultOf(err)
	pm := m.providers[provider]
	if pm == nil {
		m.attempts.WithLabelValues(provider, resultNames[r]).Inc()
		return
	}
	pm.attempts[r].Inc()
	pm.attemptDuration[b2i(r != resultSuccess)].Observe(d.Seconds())
}

// budgetExhausted counts a retry the provider's budget refused.
func (m *Metrics) budgetExhausted(provider string) {
	if m == nil {
		return
	}
	if pm := m.providers[provider]; pm != nil {
		pm.budgetExhausted.Inc()
	}
}

func (m *Metrics) panicked() {
	if m != nil {
		m.panics.Inc()
	}
}

func (m *Metrics) authFailed(admin, invalidKey bool) {
	if m != nil {
		m.authFailures[b2i(admin)][b2i(invalidKey)].Inc()
	}
}

func (m *Metrics) transportError(status int) {
	if m != nil {
		m.transportErrors.get(status).Inc()
	}
}

func (m *Metrics) connRejected(perIP bool) {
	if m != nil {
		m.connRejections[b2i(perIP)].Inc()
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// counterCache resolves the children of a CounterVec once per label set. Reads
// are a lock-free lookup in an immutable map; a miss (a label set seen for
// the first time) copies the map under a lock. The label sets are few and
// fixed by the program (the transition tables, statuses, reasons), so the map
// stops changing soon after start.
type counterCache[K comparable] struct {
	vec    *prometheus.CounterVec
	labels func(K) []string
	m      atomic.Pointer[map[K]prometheus.Counter]
	mu     sync.Mutex // serialises misses
}

func (c *counterCache[K]) init(vec *prometheus.CounterVec, labels func(K) []string) {
	c.vec, c.labels = vec, labels
	c.m.Store(&map[K]prometheus.Counter{})
}

func (c *counterCache[K]) get(k K) prometheus.Counter {
	if ctr, ok := (*c.m.Load())[k]; ok {
		return ctr
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.m.Load()
	if ctr, ok := old[k]; ok {
		return ctr
	}
	ctr := c.vec.WithLabelValues(c.labels(k)...)
	next := make(map[K]prometheus.Counter, len(old)+1)
	for kk, v := range old {
		next[kk] = v
	}
	next[k] = ctr
	c.m.Store(&next)
	return ctr
}

// breakerCollector reads every breaker's snapshot at scrape time: the state
// and counts come from the breaker itself, never from a copy kept on the way.
type breakerCollector struct {
	names    []string
	breakers map[string]*providers.Breaker
}

var (
	breakerStateDesc = prometheus.NewDesc("gateway_breaker_state",
		"Circuit breaker state per provider: 0 closed, 1 half_open, 2 open. An open breaker whose open_timeout has passed reads 2 until a request becomes its probe.",
		[]string{"provider"}, nil)
	breakerFailuresDesc = prometheus.NewDesc("gateway_breaker_consecutive_failures",
		"Consecutive failures counted by a closed breaker (it trips at breaker.failure_threshold).",
		[]string{"provider"}, nil)
	breakerRejectionsDesc = prometheus.NewDesc("gateway_breaker_rejections_total",
		"Calls a breaker refused without calling its provider (open, or half-open with every probe slot busy).",
		[]string{"provider"}, nil)
	breakerNextProbeDesc = prometheus.NewDesc("gateway_breaker_next_probe_timestamp_seconds",
		"When an open breaker admits its next probe (Unix time); absent unless open.",
		[]string{"provider"}, nil)
)

func (c *breakerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- breakerStateDesc
	ch <- breakerFailuresDesc
	ch <- breakerRejectionsDesc
	ch <- breakerNextProbeDesc
}

func (c *breakerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, name := range c.names {
		b := c.breakers[name]
		if b == nil {
			continue
		}
		s := b.Snapshot()
		ch <- prometheus.MustNewConstMetric(breakerStateDesc, prometheus.GaugeValue, breakerStateValue(s.State), name)
		ch <- prometheus.MustNewConstMetric(breakerFailuresDesc, prometheus.GaugeValue, float64(s.ConsecutiveFailures), name)
		ch <- prometheus.MustNewConstMetric(breakerRejectionsDesc, prometheus.CounterValue, float64(s.Rejections), name)
		if !s.NextProbeAt.IsZero() {
			ch <- prometheus.MustNewConstMetric(breakerNextProbeDesc, prometheus.GaugeValue, float64(s.NextProbeAt.UnixNano())/1e9, name)
		}
	}
}

func breakerStateValue(s fsm.State) float64 {
	switch s {
	case fsm.HalfOpen:
		return 1
	case fsm.Open:
		return 2
	}
	return 0
}

// registrar registers on one registry (client_golang's promauto.With does the
// same, but this keeps the help strings next to the names above).
type registrar struct{ reg *prometheus.Registry }

func (p registrar) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	p.reg.MustRegister(c)
	return c
}

func (p registrar) gaugeFunc(name, help string, f func() float64) {
	p.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

func (p registrar) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	p.reg.MustRegister(c)
	return c
}

func (p registrar) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	p.reg.MustRegister(h)
	return h
}

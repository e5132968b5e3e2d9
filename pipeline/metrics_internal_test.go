package pipeline

import (
	"io"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"strings"
	"testing"
	"time"

	"github.com/llm-gateway/gateway/fsm"
	"github.com/llm-gateway/gateway/providers"
)

func TestCounterCacheResolvesEachLabelSetOnce(t *testing.T) {
	m := NewMetrics([]string{"openai"}, nil, nil)
	k := requestKey{fsm.Failed, 502, "exhausted"}
	a, b := m.requests.get(k), m.requests.get(k)
	if a != b {
		t.Fatal("the same label set resolved to two children")
	}
	if m.requests.get(requestKey{fsm.Failed, 503, "breakers_open"}) == a {
		t.Fatal("two label sets share a child")
	}
	for _, d := range fsm.Definitions() {
		for _, r := range d.Rules {
			for _, from := range r.From {
				if _, ok := (*m.transitions.m.Load())[transitionKey{d.Kind, r.Event, from, r.To}]; !ok {
					t.Fatalf("transition %s %s→%s not pre-resolved", r.Event, from, r.To)
				}
			}
		}
	}
}

func TestResultOfNamesEveryErrorClass(t *testing.T) {
	for _, c := range []providers.Class{providers.ClassTimeout, providers.ClassServer, providers.ClassMalformed,
		providers.ClassOverloaded, providers.ClassRateLimited, providers.ClassConnect, providers.ClassAuth,
		providers.ClassInvalid, providers.ClassCanceled} {
		if got := resultNames[resultOf(&providers.Error{Class: c})]; got != string(c) {
			t.Fatalf("class %s is counted as %s", c, got)
		}
	}
	if resultNames[resultOf(nil)] != "success" {
		t.Fatal("nil is not a success")
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	m.transition(fsm.Transition{Machine: fsm.KindRequest, Event: fsm.EventSucceed})
	m.requestBegan()
	m.requestEnded(true, false, time.Second)
	m.attempt("openai", nil, time.Second)
	m.budgetExhausted("openai")
	m.panicked()
	m.authFailed(true, true)
	m.transportError(408)
	m.connRejected(true)
	m.streamBegan()
	m.streamEnded()
}

func TestKeyringAcceptsOnlyItsKeys(t *testing.T) {
	k := newKeyring([]string{"first-key-123", "second-key-456"})
	for _, tc := range []struct {
		key  string
		want bool
	}{
		{"first-key-123", true},
		{"second-key-456", true},
		{"first-key-12", false},
		{"first-key-1234", false},
		{"", false},
		{"FIRST-KEY-123", false},
	} {
		if got := k.accepts([]byte(tc.key)); got != tc.want {
			t.Errorf("accepts(%q) = %v", tc.key, got)
		}
	}
	if newKeyring(nil).enabled() {
		t.Fatal("no keys must mean auth off")
	}
}

func TestBearerTakesTheTokenOfTheBearerSchemeOnly(t *testing.T) {
	for in, want := range map[string]string{
		"Bearer abc":    "abc",
		"bearer abc":    "abc",
		"BEARER  abc ":  "abc",
		"Basic abc":     "",
		"Bearer":        "",
		"Bearer ":       "",
		"abc":           "",
		"Bearerabc def": "",
	} {
		if got := string(bearer([]byte(in))); got != want {
			t.Errorf("bearer(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestContentCharsCountsCharactersOfTextOnly(t *testing.T) {
	req := &providers.ChatRequest{Messages: []providers.Message{
		{Role: "system", Content: providers.Content{Kind: providers.ContentString, Text: "héllo"}},
		{Role: "user", Content: providers.Content{Kind: providers.ContentParts, Parts: []providers.ContentPart{
			{Type: "text", Text: "日本"}, {Type: "image_url"},
		}}},
	}}
	if n := contentChars(req); n != 7 {
		t.Fatalf("got %d, want 7", n)
	}
}

// stepOf is the Step a machine puts in its record of from --e-->.
func stepOf(d *fsm.Definition, from fsm.State, e fsm.Event) int {
	for i, st := range d.Steps() {
		if st.From == from && st.Event == e {
			return i + 1
		}
	}
	return 0
}

// The records of a request's ordinary life, as its machine makes them.
var benchTransitions = []fsm.Transition{
	{Machine: fsm.KindRequest, Event: fsm.EventValidate, From: fsm.Received, To: fsm.Validated, Step: stepOf(fsm.Request, fsm.Received, fsm.EventValidate)},
	{Machine: fsm.KindRequest, Event: fsm.EventAttempt, From: fsm.Validated, To: fsm.Attempting, Step: stepOf(fsm.Request, fsm.Validated, fsm.EventAttempt), Detail: fsm.Detail{Provider: "openai", Attempt: 1}},
	{Machine: fsm.KindRequest, Event: fsm.EventSucceed, From: fsm.Attempting, To: fsm.Succeeded, Step: stepOf(fsm.Request, fsm.Attempting, fsm.EventSucceed), Detail: fsm.Detail{Provider: "openai", Status: 200}},
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// A record is counted on its move's series whether it carries its Step (as
// a machine's records do), none (as replayed ones) or a wrong one.
func TestTransitionsAreCountedByMoveWithOrWithoutAStep(t *testing.T) {
	m := NewMetrics([]string{"anthropic", "openai"}, nil, nil)
	for _, d := range fsm.Definitions() {
		for i, st := range d.Steps() {
			ctr := m.transitions.get(transitionKey{d.Kind, st.Event, st.From, st.To})
			before := counterValue(t, ctr)
			tr := fsm.Transition{Machine: d.Kind, Event: st.Event, From: st.From, To: st.To}
			for _, step := range []int{i + 1, 0, len(d.Steps()) - i, -3, 1000} {
				tr.Step = step
				m.transition(tr)
			}
			if got := counterValue(t, ctr) - before; got != 5 {
				t.Fatalf("%s %s --%s--> %s: counted %v of 5", d.Kind, st.From, st.Event, st.To, got)
			}
		}
	}
}

// BenchmarkObserveTransition is what the metrics add to one transition.
func BenchmarkObserveTransition(b *testing.B) {
	m := NewMetrics([]string{"anthropic", "openai"}, nil, nil)
	t := benchTransitions[1]
	b.ReportAllocs()
	for b.Loop() {
		m.transition(t)
	}
}

// BenchmarkObserveTransitionWithJournal is the whole hook, journal line
// included, for scale.
func BenchmarkObserveTransitionWithJournal(b *testing.B) {
	s := &Server{metrics: NewMetrics([]string{"anthropic", "openai"}, nil, nil), journal: NewJournal(io.Discard, "text", time.Now)}
	defer s.journal.Close()
	t := benchTransitions[1]
	t.Time = time.Now()
	t.ID = "req_0123456789abcdefghijklmn"
	b.ReportAllocs()
	for b.Loop() {
		s.observe(t)
	}
}

// BenchmarkMetricsRequest is every metric a plain successful request
// records: in flight, its transitions (received → validated → attempting →
// succeeded), one attempt with its duration, the request's duration.
func BenchmarkMetricsRequest(b *testing.B) {
	m := NewMetrics([]string{"anthropic", "openai"}, nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		metricsOfOneRequest(m)
	}
}

// BenchmarkMetricsRequestParallel is the same from every CPU at once: the
// shared counters' cache lines then move between cores.
func BenchmarkMetricsRequestParallel(b *testing.B) {
	m := NewMetrics([]string{"anthropic", "openai"}, nil, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			metricsOfOneRequest(m)
		}
	})
}

func metricsOfOneRequest(m *Metrics) {
	m.requestBegan()
	m.transition(benchTransitions[0])
	m.transition(benchTransitions[1])
	m.attempt("openai", nil, 150*time.Millisecond)
	m.transition(benchTransitions[2])
	m.requestEnded(true, false, 152*time.Millisecond)
}

// BenchmarkAuthorizeKey is the cost of checking a gateway key against a
// ring of five.
func BenchmarkAuthorizeKey(b *testing.B) {
	k := newKeyring([]string{"k1-aaaaaaaa", "k2-bbbbbbbb", "k3-cccccccc", "k4-dddddddd", "k5-eeeeeeee"})
	key := []byte("Bearer k5-eeeeeeee")
	b.ReportAllocs()
	for b.Loop() {
		if !k.accepts(bearer(key)) {
			b.Fatal("refused")
		}
	}
}

func TestPanicStackStartsAtThePanickingFrame(t *testing.T) {
	var stack string
	func() {
		defer func() {
			if recover() != nil {
				stack = panicStack(3)
			}
		}()
		panicHere()
	}()
	first, _, _ := strings.Cut(stack, " < ")
	if !strings.HasPrefix(first, "pipeline.panicHere (metrics_internal_test.go:") || strings.Count(stack, " < ") != 2 {
		t.Fatalf("stack %q", stack)
	}
}

func panicHere() { panic("here") }

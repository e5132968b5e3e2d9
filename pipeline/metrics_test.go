package pipeline_test

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-gateway/gateway/mock"
	"github.com/llm-gateway/gateway/pipeline/config"
)

// series is one expected sample: a family, labels as name, value pairs, and
// its value (a histogram's sample count).
type series struct {
	name   string
	labels []string
	want   float64
}

func expectSeries(t *testing.T, g *gateway, want []series) {
	t.Helper()
	fams := g.scrape()
	for _, s := range want {
		got, found := metricValue(fams, s.name, s.labels...)
		if !found || got != s.want {
			t.Errorf("%s%v = %v (found %v), want %v", s.name, s.labels, got, found, s.want)
		}
	}
}

func TestMetricsCountRequestsAttemptsRetriesAndFailovers(t *testing.T) {
	g := startGateway(t, func(c *config.Config) {
		// One retry per window, whatever the traffic: the second is refused.
		c.Pipeline.Policy.RetryBudget.Ratio = 0.001
		c.Pipeline.Policy.RetryBudget.MinRetries = 1
	})
	steps := []struct {
		name   string
		fault  *mock.Rule
		body   string
		status int
	}{
		{"a success", nil, hello, 200},
		{"a retry after a 500", &mock.Rule{Provider: "openai", Fault: mock.FaultServerError, Status: 500, Count: 1}, hello, 200},
		{"a failover after a 429", &mock.Rule{Provider: "openai", Fault: mock.FaultRateLimit, Count: 1}, hello, 200},
		{"a failover when the retry budget is spent", &mock.Rule{Provider: "openai", Fault: mock.FaultServerError, Status: 500, Count: 1}, hello, 200},
		{"an invalid request", nil, `{"model":"gpt-4","messages":[]}`, 400},
		{"a stream", nil, `{"model":"gpt-4","stream":true,"messages":[{"role":"user","content":"hi"}]}`, 200},
	}
	for i, s := range steps {
		if s.fault != nil {
			g.fault(*s.fault)
		}
		if a := g.do("POST", "/v1/chat/completions", s.body, "X-Request-ID", "step-"+itoa(i)); a.status != s.status {
			t.Fatalf("%s: got %d %s", s.name, a.status, a.body)
		}
	}
	// The stream's end is logged, and counted, by its writer.
	g.waitLines("request_id=step-"+itoa(len(steps)-1), "action=success")
	deadline := time.Now().Add(2 * time.Second)
	for {
		if v, _ := metricValue(g.scrape(), "gateway_streams_in_flight"); v == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	expectSeries(t, g, []series{
		{"gateway_requests_total", []string{"outcome", "succeeded", "status", "200"}, 5},
		{"gateway_requests_total", []string{"outcome", "failed", "status", "400", "reason", "invalid_request"}, 1},
		{"gateway_request_duration_seconds", []string{"outcome", "succeeded", "stream", "false"}, 4},
		{"gateway_request_duration_seconds", []string{"outcome", "succeeded", "stream", "true"}, 1},
		{"gateway_request_duration_seconds", []string{"outcome", "failed"}, 1},
		{"gateway_requests_in_flight", nil, 0},
		{"gateway_streams_in_flight", nil, 0},
		{"gateway_attempts_total", []string{"provider", "openai", "result", "success"}, 3},
		{"gateway_attempts_total", []string{"provider", "openai", "result", "server"}, 2},
		{"gateway_attempts_total", []string{"provider", "openai", "result", "rate_limited"}, 1},
		{"gateway_attempts_total", []string{"provider", "anthropic", "result", "success"}, 2},
		{"gateway_attempt_duration_seconds", []string{"provider", "openai", "outcome", "error"}, 3},
		{"gateway_transitions_total", []string{"machine", "request", "event", "retry", "from", "attempting", "to", "backoff"}, 1},
		{"gateway_transitions_total", []string{"machine", "request", "event", "failover", "from", "attempting", "to", "failover"}, 2},
		{"gateway_transitions_total", []string{"machine", "request", "event", "reject", "from", "received", "to", "failed"}, 1},
		{"gateway_transitions_total", []string{"machine", "request", "event", "validate"}, 5},
		{"gateway_transitions_total", []string{"machine", "breaker"}, 0},
		{"gateway_retry_budget_exhausted_total", []string{"provider", "openai"}, 1},
		{"gateway_backoff_seconds_total", []string{"provider", "openai"}, 0.04},
		{"gateway_breaker_state", []string{"provider", "openai"}, 0},
		{"gateway_breaker_consecutive_failures", []string{"provider", "openai"}, 0}, // the stream's success reset it
	})
}

func TestMetricsShowABreakerTripAndItsProbe(t *testing.T) {
	g := startGateway(t, func(c *config.Config) { c.Providers.Breaker.FailureThreshold = 1 })
	g.fault(mock.Rule{Provider: "openai", Fault: mock.FaultServerError, Status: 500, Count: 1})
	if a := g.post(hello); a.status != 200 || a.str("provider") != "anthropic" {
		t.Fatalf("got %d %s", a.status, a.raw)
	}
	if a := g.post(hello); a.status != 200 || a.str("provider") != "anthropic" {
		t.Fatalf("got %d %s", a.status, a.raw)
	}
	expectSeries(t, g, []series{
		{"gateway_breaker_state", []string{"provider", "openai"}, 2},
		{"gateway_breaker_state", []string{"provider", "anthropic"}, 0},
		{"gateway_breaker_rejections_total", []string{"provider", "openai"}, 1},
		{"gateway_transitions_total", []string{"machine", "breaker", "event", "trip", "from", "closed", "to", "open"}, 1},
		{"gateway_transitions_total", []string{"machine", "request", "event", "failover", "from", "validated", "to", "failover"}, 1},
	})
	probe, found := metricValue(g.scrape(), "gateway_breaker_next_probe_timestamp_seconds", "provider", "openai")
	if d := time.Until(time.Unix(int64(probe), 0)); !found || d < 25*time.Second || d > 31*time.Second {
		t.Fatalf("next probe in %s (found %v), want about open_timeout", d, found)
	}
}

// TestMetricsDocListsEverySeries keeps docs/metrics.md and the registry in
// step: every gateway_ series registered is documented, and every one
// documented exists.
func TestMetricsDocListsEverySeries(t *testing.T) {
	g := startGateway(t, nil)
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *prometheus.Desc, 256)
	go func() { g.srv.Metrics().Registry().Describe(ch); close(ch) }()
	nameOf := regexp.MustCompile(`fqName: "([^"]+)"`)
	registered := map[string]bool{}
	for d := range ch {
		if m := nameOf.FindStringSubmatch(d.String()); m != nil && strings.HasPrefix(m[1], "gateway_") {
			registered[m[1]] = true
		}
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("\\| `(gateway_[a-z_]+)`").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	var missing, stale []string
	for n := range registered {
		if !documented[n] {
			missing = append(missing, n)
		}
	}
	for n := range documented {
		if !registered[n] {
			stale = append(stale, n)
		}
	}
	sort.Strings(missing)
	sort.Strings(stale)
	if len(missing) > 0 || len(stale) > 0 || len(registered) < 10 {
		t.Fatalf("docs/metrics.md: undocumented %v, documented but not registered %v (%d registered)", missing, stale, len(registered))
	}
}

package pipeline_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/llm-gateway/gateway/mock"
	"github.com/llm-gateway/gateway/pipeline"
	"github.com/llm-gateway/gateway/pipeline/config"
	"github.com/llm-gateway/gateway/providers"
)

// opsOptions widen startGateway for the operations tests: the mock's own
// settings, the environment the keys come from, and a provider wrapper.
type opsOptions struct {
	mock   mock.Config
	getenv func(string) string
	edit   func(*config.Config)
	wrap   func(providers.Provider) providers.Provider
}

// startOps is startGateway with opsOptions.
func startOps(t *testing.T, o opsOptions) *gateway {
	t.Helper()
	m := mock.New(o.mock)
	maddr, err := m.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	if o.getenv == nil {
		o.getenv = func(string) string { return "" }
	}
	yml := bytes.ReplaceAll(config.DefaultYAML(), []byte("http://127.0.0.1:8001"), []byte("http://"+maddr))
	cfg, err := config.Parse(yml, o.getenv)
	if err != nil {
		t.Fatal(err)
	}
	fastPolicy(cfg)
	if o.edit != nil {
		o.edit(cfg)
	}
	log := &syncBuffer{}
	srv, err := pipeline.New(pipeline.Config{Settings: cfg.Pipeline, Providers: cfg.Providers, Log: log, WrapProvider: o.wrap})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		// As in startGateway: every test's log must replay cleanly.
		rep, err := pipeline.Replay(strings.NewReader(log.String()), pipeline.ReplayOptions{})
		if err == nil {
			err = rep.Err()
		}
		if err != nil {
			t.Errorf("the journal does not replay cleanly: %v\n%s", err, log.String())
		}
	})
	return &gateway{t: t, url: "http://" + ln.Addr().String(), mock: m, srv: srv, log: log}
}

func (g *gateway) addr() string { return strings.TrimPrefix(g.url, "http://") }

// rawAnswer is any answer of the gateway, read off its own connection.
type rawAnswer struct {
	status int
	header http.Header
	body   string
}

// do sends one request on a new connection (Connection: close) and reads
// the whole answer. headers are name, value pairs.
func (g *gateway) do(method, path, body string, headers ...string) rawAnswer {
	g.t.Helper()
	var b strings.Builder
	b.WriteString(method + " " + path + " HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n")
	for i := 0; i+1 < len(headers); i += 2 {
		b.WriteString(headers[i] + ": " + headers[i+1] + "\r\n")
	}
	if body != "" {
		b.WriteString("Content-Type: application/json\r\nContent-Length: " + itoa(len(body)) + "\r\n")
	}
	b.WriteString("\r\n" + body)
	return g.raw(b.String())
}

// raw writes req on a new connection and reads one answer.
func (g *gateway) raw(req string) rawAnswer {
	g.t.Helper()
	conn, err := net.Dial("tcp", g.addr())
	if err != nil {
		g.t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		g.t.Fatal(err)
	}
	return readAnswer(g.t, conn)
}

func readAnswer(t *testing.T, conn net.Conn) rawAnswer {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return rawAnswer{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// scrape reads GET /metrics and parses it as the Prometheus text format.
func (g *gateway) scrape(headers ...string) map[string]*dto.MetricFamily {
	g.t.Helper()
	return g.parseMetrics(g.do("GET", "/metrics", "", headers...))
}

// parseMetrics parses an answer of GET /metrics.
func (g *gateway) parseMetrics(a rawAnswer) map[string]*dto.MetricFamily {
	g.t.Helper()
	if a.status != 200 {
		g.t.Fatalf("GET /metrics: %d %s", a.status, a.body)
	}
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		g.t.Fatalf("GET /metrics content type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(a.body))
	if err != nil {
		g.t.Fatalf("/metrics is not the Prometheus text format: %v\n%s", err, a.body)
	}
	return fams
}

// metricValue returns the value of the series of family name whose labels
// include want (name=value pairs), summed over the matching series; for a
// histogram, its sample count. found is false when no series matches.
func metricValue(fams map[string]*dto.MetricFamily, name string, want ...string) (v float64, found bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		case m.Histogram != nil:
			v += float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			v += m.GetUntyped().GetValue()
		}
	}
	return v, found
}

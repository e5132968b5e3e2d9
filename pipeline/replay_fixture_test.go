package pipeline

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/llm-gateway/gateway/fsm"
	"github.com/llm-gateway/gateway/providers"
)

// writeScriptedJourneys logs one journey of each kind through the real
// Journal, two of them interleaved, across a restart: the base of the
// fixtures in testdata/replay (clean.log, clean.jsonl), which the corrupted
// fixtures are hand-edited copies of.
func writeScriptedJourneys(g *logGen) {
	ms := time.Millisecond
	at := func(d time.Duration) { g.clock.t = genEpoch.Add(d) }
	openai := g.breakers["openai"]

	at(0)
	g.start()

	// Happy, interleaved with a retry after a timeout.
	at(1 * ms)
	a := g.receive("req_happy", "gpt-4")
	at(1200 * time.Microsecond)
	a.validate()
	at(1500 * time.Microsecond)
	a.attempt("openai", "gpt-4o")
	at(5 * ms)
	b := g.receive("req_retry", "gpt-4o")
	at(5200 * time.Microsecond)
	b.validate()
	at(5400 * time.Microsecond)
	b.attempt("openai", "gpt-4o")
	at(152 * ms)
	a.succeed("openai")
	at(1005400 * time.Microsecond)
	b.failed("openai", providers.ClassTimeout, 0, 0, time.Second, "")
	b.retry("openai", providers.ClassTimeout, 2*time.Second)
	at(3006 * ms)
	b.attempt("openai", "gpt-4o")
	at(3204 * ms)
	b.succeed("openai")

	// Failover on a rate limit.
	at(4 * time.Second)
	c := g.receive("req_failover", "gpt-4")
	c.validate()
	at(4*time.Second + 300*time.Microsecond)
	c.attempt("openai", "gpt-4o")
	at(4*time.Second + 80*ms)
	c.failed("openai", providers.ClassRateLimited, 429, time.Second, 80*ms, `Rate limit reached for "gpt-4o" on requests = 500/min`)
	c.failover("anthropic", providers.ClassRateLimited, "rate_limited")
	c.attempt("anthropic", "claude-3-5-sonnet-20241022")
	at(4*time.Second + 410*ms)
	c.succeed("anthropic")

	// The failure that trips openai's breaker, then a request that finds it
	// open, then the probe that closes it again.
	at(6 * time.Second)
	d := g.receive("req_trip", "gpt-4")
	d.validate()
	d.attempt("openai", "gpt-4o")
	at(6*time.Second + 40*ms)
	d.failed("openai", providers.ClassServer, 502, 0, 40*ms, "Bad gateway")
	openai.fire(fsm.EventTrip, fsm.Detail{ErrorClass: "server", Reason: "5 consecutive failures"})
	d.failover("anthropic", providers.ClassServer, "cannot_retry")
	d.attempt("anthropic", "claude-3-5-sonnet-20241022")
	at(6*time.Second + 350*ms)
	d.succeed("anthropic")

	at(10 * time.Second)
	e := g.receive("req_open", "gpt-4")
	e.validate()
	e.skipped("openai", 26*time.Second+40*ms)
	e.failover("anthropic", "", "breaker_open")
	e.attempt("anthropic", "claude-3-5-sonnet-20241022")
	at(10*time.Second + 290*ms)
	e.succeed("anthropic")

	at(37 * time.Second)
	f := g.receive("req_probe", "gpt-4")
	f.validate()
	openai.fire(fsm.EventProbe, fsm.Detail{Reason: "open_timeout 30s passed"})
	f.attempt("openai", "gpt-4o")
	at(37*time.Second + 120*ms)
	openai.fire(fsm.EventRecover, fsm.Detail{Reason: "1 probe succeeded"})
	f.succeed("openai")

	// Refused at the door, and refused by the provider.
	at(40 * time.Second)
	r := g.receive("req_rejected", "")
	r.reject(400, "invalid")
	at(41 * time.Second)
	h := g.receive("req_invalid", "claude-3-5-sonnet")
	h.validate()
	h.attempt("anthropic", "claude-3-5-sonnet-20241022")
	at(41*time.Second + 90*ms)
	h.failed("anthropic", providers.ClassInvalid, 400, 0, 90*ms, "max_tokens: must be ≤ 4096")
	h.giveUp("anthropic", providers.ClassInvalid, 400, "upstream_invalid")

	// Every attempt used up on both targets.
	at(42 * time.Second)
	x := g.receive("req_exhausted", "gpt-4")
	x.validate()
	x.attempt("openai", "gpt-4o")
	t := 42 * time.Second
	for _, wait := range []time.Duration{2 * time.Second, 4 * time.Second} {
		t += 500 * ms
		at(t)
		x.failed("openai", providers.ClassServer, 500, 0, 500*ms, "internal error")
		x.retry("openai", providers.ClassServer, wait)
		t += wait
		at(t)
		x.attempt("openai", "gpt-4o")
	}
	t += 500 * ms
	at(t)
	x.failed("openai", providers.ClassServer, 500, 0, 500*ms, "internal error")
	x.failover("anthropic", providers.ClassServer, "attempts_exhausted")
	x.attempt("anthropic", "claude-3-5-sonnet-20241022")
	at(t + 3*ms)
	x.failed("anthropic", providers.ClassConnect, 0, 0, 3*ms, "")
	x.giveUp("anthropic", providers.ClassConnect, 502, "exhausted")

	// A restart: breakers are closed again, so openai may trip anew.
	at(70 * time.Second)
	g.unrelated("orchestrator: shutting down (signal: terminated)")
	at(75 * time.Second)
	g.start()
	openai = g.breakers["openai"]
	at(76 * time.Second)
	k := g.receive("req_reopen", "gpt-4")
	k.validate()
	k.attempt("openai", "gpt-4o")
	at(77 * time.Second)
	k.failed("openai", providers.ClassTimeout, 0, 0, time.Second, "")
	openai.fire(fsm.EventTrip, fsm.Detail{ErrorClass: "timeout", Reason: "5 consecutive failures"})
	k.failover("anthropic", providers.ClassTimeout, "cannot_retry")
	k.attempt("anthropic", "claude-3-5-sonnet-20241022")
	at(77*time.Second + 200*ms)
	k.succeed("anthropic")
	at(108 * time.Second)
	l := g.receive("req_reprobe", "gpt-4")
	l.validate()
	openai.fire(fsm.EventProbe, fsm.Detail{Reason: "open_timeout 30s passed"})
	l.attempt("openai", "gpt-4o")
	at(108*time.Second + 60*ms)
	l.failed("openai", providers.ClassServer, 503, 0, 60*ms, "overloaded")
	openai.fire(fsm.EventReopen, fsm.Detail{ErrorClass: "server", Reason: "probe failed"})
	l.failover("anthropic", providers.ClassServer, "cannot_retry")
	l.attempt("anthropic", "claude-3-5-sonnet-20241022")
	at(108*time.Second + 400*ms)
	l.succeed("anthropic")

	// A client reuses an X-Request-ID: a new journey.
	at(110 * time.Second)
	m := g.receive("req_retry", "gpt-4o")
	m.validate()
	m.attempt("anthropic", "claude-3-5-sonnet-20241022")
	at(110*time.Second + 250*ms)
	m.succeed("anthropic")
}

// scriptedLog returns the scripted journeys as the journal writes them.
func scriptedLog(format string) string {
	var buf bytes.Buffer
	g := newLogGen(&buf, format)
	writeScriptedJourneys(g)
	g.close()
	return buf.String()
}

// TestReplayWriteFixtures regenerates the clean fixtures from the live
// journal when REPLAY_WRITE_FIXTURES is set. The corrupted fixtures are
// hand-edited copies of clean.log and clean.jsonl: regenerate them by hand
// (see testdata/replay/README) if the journal's format changes.
func TestReplayWriteFixtures(t *testing.T) {
	if os.Getenv("REPLAY_WRITE_FIXTURES") == "" {
		t.Skip("set REPLAY_WRITE_FIXTURES=1 to rewrite testdata/replay/clean.*")
	}
	for name, format := range map[string]string{"clean.log": "text", "clean.jsonl": "json"} {
		if err := os.WriteFile(filepath.Join("testdata", "replay", name), []byte(scriptedLog(format)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

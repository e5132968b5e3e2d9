package pipeline

import (
	"bytes"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/llm-gateway/gateway/fsm"
	"github.com/llm-gateway/gateway/providers"
)

func replayString(t *testing.T, log string, opts ReplayOptions) *ReplayReport {
	t.Helper()
	rep, err := Replay(strings.NewReader(log), opts)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	return rep
}

// generate runs the traffic simulation into a log of the given format.
func generate(t testing.TB, format string, cfg simConfig) (string, genTally) {
	t.Helper()
	var buf bytes.Buffer
	g := newLogGen(&buf, format)
	g.start()
	g.simulate(cfg)
	g.close()
	return buf.String(), g.tally
}

func TestReplayGeneratedTrafficReplaysCleanly(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			log, want := generate(t, format, simConfig{Requests: 6000, Concurrency: 16, Seed: 7, RestartEvery: 4000, UnrelatedEvery: 700})
			rep := replayString(t, log, ReplayOptions{})
			if err := rep.Err(); err != nil {
				t.Fatal(err)
			}
			if rep.WarningCount != 0 {
				t.Errorf("warnings: %v", rep.Warnings)
			}
			req := rep.Requests
			if req.Received != want.received || req.Succeeded != want.succeeded || req.Failed != want.failed ||
				req.Rejected != want.rejected || req.Unfinished != 0 || req.Partial != 0 {
				t.Errorf("requests %+v; generator received %d, succeeded %d, failed %d, rejected %d",
					req, want.received, want.succeeded, want.failed, want.rejected)
			}
			if !maps.Equal(req.ByStatus, want.byStatus) {
				t.Errorf("failed by status %v, want %v", req.ByStatus, want.byStatus)
			}
			for n, c := range want.attempts {
				if got := req.Attempts[min(n, MaxAttemptsBucket)]; got != c {
					t.Errorf("%d attempts: %d requests, want %d", n, got, c)
				}
			}
			if rep.Restarts != want.restarts || rep.Ignored != want.unrelated {
				t.Errorf("restarts %d ignored %d; want %d and %d", rep.Restarts, rep.Ignored, want.restarts, want.unrelated)
			}
			if rep.Latency.Count != want.received {
				t.Errorf("latency of %d requests, want %d", rep.Latency.Count, want.received)
			}
			var trips int64
			for _, p := range []string{"openai", "anthropic"} {
				ps := rep.Providers[p]
				if ps == nil {
					t.Fatalf("no summary for %s", p)
				}
				got := [7]int64{ps.Trips, ps.Probes, ps.Recovers, ps.Reopens, ps.FailoversOut, ps.FailoversIn, ps.Skipped}
				wantP := [7]int64{want.trips[p], want.probes[p], want.recovers[p], want.reopens[p], want.failoversOut[p], want.failoversIn[p], want.skipped[p]}
				if got != wantP {
					t.Errorf("%s: trips/probes/recovers/reopens/out/in/skipped %v, want %v", p, got, wantP)
				}
				trips += ps.Trips
			}
			if trips == 0 || rep.Providers["openai"].Reopens+rep.Providers["anthropic"].Reopens == 0 {
				t.Errorf("the simulation should trip and reopen breakers: %+v %+v", *rep.Providers["openai"], *rep.Providers["anthropic"])
			}
		})
	}
}

func TestReplayQuickSmoke(t *testing.T) {
	log, _ := generate(t, "text", simConfig{Requests: 20, Concurrency: 4, Seed: 1})
	rep := replayString(t, log, ReplayOptions{Journeys: true})
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	_ = fmt.Sprint
	_ = reflect.DeepEqual
	_ = fsm.Request
	_ = providers.ClassAuth
	_ = time.Second
}

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestOpenRoundsRunAgainWhenOthersOrTheGeneratorWereNoisy(t *testing.T) {
	var log bytes.Buffer
	b := &bench{opts: options{NoisyReruns: 2}, progress: &log}
	for i, c := range []struct {
		otherPct, paceMs float64
		want             bool
	}{
		{0, 0.2, false},         // a quiet round
		{0, noisyPaceMs, false}, // at the limit
		{0, 0.9, true},          // the generator fell behind: the first rerun
		{12, 0.2, true},         // other processes were busy: the second
		{0, 3, false},           // the budget is spent: kept as it is
	} {
		if got := b.openAgain("latency @1000/s proxy", c.otherPct, c.paceMs); got != c.want {
			t.Fatalf("case %d (others %.0f %%, pacer %.2f ms): again %v, want %v", i, c.otherPct, c.paceMs, got, c.want)
		}
	}
	if b.reruns != 2 {
		t.Fatalf("%d reruns counted, want 2", b.reruns)
	}
	for _, want := range []string{
		"latency @1000/s proxy: the load generator's pacer was 0.90 ms late at p99; running the round again (1 of 2 reruns)",
		"latency @1000/s proxy: other processes took 12 % of the CPU; running the round again (2 of 2 reruns)",
	} {
		if !strings.Contains(log.String(), want) {
			t.Fatalf("log %q lacks %q", log.String(), want)
		}
	}
}

func TestPacerLateIsTheWorstPhaseMedian(t *testing.T) {
	b := &bench{
		opts:    options{Rates: []float64{1000, 3000}},
		servers: []*server{{Name: "proxy"}, {Name: "orchestrator"}},
		ttfb: map[string]*openRounds{
			"proxy":        {paceP99: []float64{0.2, 0.3, 0.2}},
			"orchestrator": {paceP99: []float64{0.2, 0.2, 0.2}},
		},
		open: map[float64]map[string]*openRounds{
			1000: {"proxy": {paceP99: []float64{0.2, 9, 0.2}}, "orchestrator": {paceP99: []float64{0.1, 0.2, 0.3}}},
			3000: {"proxy": {paceP99: []float64{0.2, 0.2, 0.2}}, "orchestrator": {paceP99: []float64{0.6, 0.7, 0.1}}},
		},
	}
	// One late round among three moves no median; two do.
	if got := b.pacerLate(); got != 0.6 {
		t.Fatalf("pacerLate %.2f, want 0.60 (the median of orchestrator @3000/s)", got)
	}
}

func TestPaceRecordsHowLateEachHandOffWas(t *testing.T) {
	// A timeline that began 50 ms ago: its first requests are already due,
	// and the pacer hands them out at once, 50 ms late or more.
	sched := schedule{Rate: 1000, Duration: 5 * time.Millisecond}
	late := make([]time.Duration, sched.Count())
	jobs := make(chan int, sched.Count())
	sent := pace(context.Background(), time.Now().Add(-50*time.Millisecond), sched, jobs, late)
	if sent != sched.Count() || len(jobs) != sent {
		t.Fatalf("handed out %d (%d in the channel), want %d", sent, len(jobs), sched.Count())
	}
	for i, l := range late {
		if l < 45*time.Millisecond {
			t.Fatalf("request %d was due %v before it was handed out, recorded %v", i, 50*time.Millisecond-time.Duration(i)*time.Millisecond, l)
		}
	}
}

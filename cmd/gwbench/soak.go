package main

import (
	"context"
	"fmt"
	"os"
	"time"
)

// soakResult is the orchestrator's memory over a long closed-loop phase. Its
// RSS is sampled every second; "warm" is the sample at the end of the
// warm-up (heaps, pools and buffers have grown to their working size by
// then), "end" the last one. Flat means growth under flatLimitKB.
type soakResult struct {
	DurationS      float64 `json:"duration_s"`
	WarmupS        float64 `json:"warmup_s"`
	Requests       int64   `json:"requests"`
	RPS            float64 `json:"rps"`
	RSSWarmKB      int64   `json:"rss_warm_kb"`
	RSSEndKB       int64   `json:"rss_end_kb"`
	RSSMaxKB       int64   `json:"rss_max_kb"` // after the warm-up
	GrowthKB       int64   `json:"growth_kb"`
	GrowthPct      float64 `json:"growth_pct"`
	SlopeKBPerMin  float64 `json:"slope_kb_per_min"` // least squares over the samples after the warm-up
	LimitKB        int64   `json:"limit_kb"`
	Flat           bool    `json:"flat"`
	JournalBytesRq float64 `json:"journal_bytes_per_req,omitempty"`
	OtherCPUPct    float64 `json:"other_cpu_pct"`
	SamplesKB      []int64 `json:"rss_samples_kb"` // one a second, from the start
}

// flatLimitKB is the growth still called flat: 10 % of the warm RSS, but at
// least 5 MiB, below which a Go heap's GC cycles and a few more buffers move
// RSS without any leak.
func flatLimitKB(warmKB int64) int64 { return max(warmKB/10, 5<<10) }

// soakMemory runs the orchestrator in a closed loop for the soak duration
// and samples its RSS every second.
func (b *bench) soakMemory(ctx context.Context) error {
	d, warm := b.opts.Soak, b.opts.SoakWarmup
	pid := b.orch.Front.Pid()
	journal0 := fileSize(b.journal)

	type sample struct {
		at time.Duration
		kb int64
	}
	var samples []sample
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		start := time.Now()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			if m, err := memory(pid); err == nil {
				samples = append(samples, sample{time.Since(start), m.RSS})
			}
			select {
			case <-t.C:
			case <-stop:
				return
			}
		}
	}()
	b.logf("soak: %s closed loop on the orchestrator, RSS sampled every second", d)
	res, err := closedLoop(ctx, b.target(b.orch, bodyPlain, 200), b.opts.Conns, 0, d, maxClosedRequests(d))
	close(stop)
	<-sampled
	if err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	if m, err := memory(pid); err == nil {
		samples = append(samples, sample{d, m.RSS})
	}

	s := &soakResult{DurationS: d.Seconds(), WarmupS: warm.Seconds(), Requests: res.Requests, RPS: round3(res.RPS()), OtherCPUPct: round3(res.CPU.OtherPct)}
	var xs, ys []float64
	for _, sm := range samples {
		s.SamplesKB = append(s.SamplesKB, sm.kb)
		if sm.at < warm {
			continue
		}
		if s.RSSWarmKB == 0 {
			s.RSSWarmKB = sm.kb
		}
		s.RSSMaxKB = max(s.RSSMaxKB, sm.kb)
		xs = append(xs, sm.at.Minutes())
		ys = append(ys, float64(sm.kb))
	}
	if len(samples) > 0 {
		s.RSSEndKB = samples[len(samples)-1].kb
	}
	s.GrowthKB = s.RSSEndKB - s.RSSWarmKB
	if s.RSSWarmKB > 0 {
		s.GrowthPct = 100 * float64(s.GrowthKB) / float64(s.RSSWarmKB)
	}
	s.GrowthPct = round3(s.GrowthPct)
	s.SlopeKBPerMin = round3(slope(xs, ys))
	s.LimitKB = flatLimitKB(s.RSSWarmKB)
	s.Flat = s.RSSWarmKB > 0 && s.GrowthKB < s.LimitKB
	if res.Requests > 0 && journal0 >= 0 {
		s.JournalBytesRq = round3(float64(fileSize(b.journal)-journal0) / float64(res.Requests))
	}
	b.soak = s
	b.logf("soak: %.0f req/s, RSS %.1f MiB after warm-up → %.1f MiB at the end (max %.1f)",
		s.RPS, mib(s.RSSWarmKB), mib(s.RSSEndKB), mib(s.RSSMaxKB))
	return nil
}

func mib(kb int64) float64 { return float64(kb) / 1024 }

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return fi.Size()
}

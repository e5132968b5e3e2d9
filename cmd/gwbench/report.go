package main

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// targetCheck is one target of the issue, checked as a ratio (or a
// difference) of (c) to (b) within the run.
type targetCheck struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	Unit  string  `json:"unit"`
	Pass  bool    `json:"pass"`
	Text  string  `json:"text"`
}

// The targets.
const (
	minThroughputRatio = 0.80 // (c) req/s over (b) req/s
	maxCPURatio        = 1.5  // (c) CPU/req over (b) CPU/req
	maxP99AddMs        = 0.2  // (c) p99 minus (b) p99 at targetRate
	maxTTFBAddMs       = 0.5  // (c) streamed p99 TTFB minus (b)'s
	minRejectRatio     = 2.0  // reject-path req/s over proxied req/s, both (c)
	targetRate         = 1000 // req/s of the p99 target
)

// checks evaluates every target the run measured.
func (b *bench) checks() []targetCheck {
	var out []targetCheck
	add := func(name string, value, limit float64, unit string, pass bool, text string) {
		out = append(out, targetCheck{Name: name, Value: round3(value), Limit: limit, Unit: unit, Pass: pass, Text: text})
	}
	p, c := b.tput["proxy"], b.tput["orchestrator"]
	if r, rounds := pairedRatio(c.rps, p.rps); len(rounds) > 0 {
		add("throughput_ratio", r, minThroughputRatio, "ratio", r >= minThroughputRatio,
			fmt.Sprintf("orchestrator throughput is %.0f %% of the bare proxy's (target ≥ %.0f %%; median of the rounds' ratios %s): medians %.0f vs %.0f req/s",
				100*r, 100*minThroughputRatio, listRatios(rounds), median(c.rps), median(p.rps)))
	}
	if r, rounds := pairedRatio(c.cpuUs, p.cpuUs); len(rounds) > 0 {
		add("cpu_ratio", r, maxCPURatio, "ratio", r <= maxCPURatio,
			fmt.Sprintf("orchestrator CPU per request is %.2f× the bare proxy's (target ≤ %.1f×; median of the rounds' ratios %s): medians %.1f vs %.1f µs",
				r, maxCPURatio, listRatios(rounds), median(c.cpuUs), median(p.cpuUs)))
	}
	rate := float64(targetRate)
	if _, ok := b.open[rate]; !ok && len(b.opts.Rates) > 0 {
		rate = b.opts.Rates[0]
	}
	if m, ok := b.open[rate]; ok {
		lp, lc := median(m["proxy"].p99), median(m["orchestrator"].p99)
		d := lc - lp
		add("p99_added_ms", d, maxP99AddMs, "ms", d <= maxP99AddMs,
			fmt.Sprintf("p99 latency at %.0f req/s adds %+.3f ms over the bare proxy (target ≤ %.1f ms): %.3f vs %.3f ms", rate, d, maxP99AddMs, lc, lp))
	}
	if b.ttfb != nil {
		lp, lc := median(b.ttfb["proxy"].p99), median(b.ttfb["orchestrator"].p99)
		d := lc - lp
		add("ttfb_p99_added_ms", d, maxTTFBAddMs, "ms", d < maxTTFBAddMs,
			fmt.Sprintf("streamed time to first byte p99 adds %+.3f ms over the bare proxy (target < %.1f ms): %.3f vs %.3f ms", d, maxTTFBAddMs, lc, lp))
	}
	if s := b.soak; s != nil {
		add("soak_rss_growth_kb", float64(s.GrowthKB), float64(s.LimitKB), "KiB", s.Flat,
			fmt.Sprintf("orchestrator RSS over a %.0f s soak: %.1f MiB after %.0f s warm-up → %.1f MiB at the end (%+.1f %%, limit +%.1f MiB; slope %+.0f KiB/min)",
				s.DurationS, mib(s.RSSWarmKB), s.WarmupS, mib(s.RSSEndKB), s.GrowthPct, mib(s.LimitKB), s.SlopeKBPerMin))
	}
	if r, rounds := pairedRatio(b.reject.rps, c.rps); len(rounds) > 0 {
		add("reject_throughput_ratio", r, minRejectRatio, "ratio", r >= minRejectRatio,
			fmt.Sprintf("reject-path throughput is %.2f× a proxied call's (target ≥ %.0f×; median of the rounds' ratios %s): medians %.0f vs %.0f req/s",
				r, minRejectRatio, listRatios(rounds), median(b.reject.rps), median(c.rps)))
	}
	return out
}

// pairedRatio compares two configurations round by round: each round
// measures every configuration in the same stretch of time (taking turns, in
// the closed loop), so a round's ratio compares them in the same phase of
// the machine, and the median of those ratios is the verdict. The ratio of the two medians, taken each over its own rounds,
// can pair a fast round of one with a slow round of the other when the VM
// drifts during the run (it does: see docs/performance.md). It returns the
// median and the ratio of each round.
func pairedRatio(num, den []float64) (float64, []float64) {
	n := min(len(num), len(den))
	rounds := make([]float64, 0, n)
	for i := range n {
		if den[i] > 0 {
			rounds = append(rounds, num[i]/den[i])
		}
	}
	return median(rounds), rounds
}

func listRatios(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(s, " ")
}

// records builds the run's JSON lines.
func (b *bench) records(checks []targetCheck) []record {
	var out []record
	for _, s := range b.servers {
		t := b.tput[s.Name]
		r := b.ri.record(s.Name, "throughput")
		r.Conns, r.Rounds, r.DurationS = b.opts.Conns, b.opts.Rounds, b.opts.Duration.Seconds()
		fillTput(&r, t)
		r.PeakRSSKB = b.peakRSS[s.Name]
		out = append(out, r)
	}
	r := b.ri.record("orchestrator-reject", "throughput")
	r.Conns, r.Rounds, r.DurationS = b.opts.Conns, b.opts.Rounds, b.opts.RejectDuration.Seconds()
	fillTput(&r, &b.reject)
	out = append(out, r)
	for _, rate := range b.opts.Rates {
		for _, s := range b.servers {
			r := b.ri.record(s.Name, "latency")
			r.Conns, r.Rounds, r.DurationS, r.RateRPS = b.opts.Conns, b.opts.Rounds, b.opts.OpenDuration.Seconds(), rate
			fillOpen(&r, b.open[rate][s.Name])
			out = append(out, r)
		}
	}
	for _, s := range b.servers {
		r := b.ri.record(s.Name, "stream_ttfb")
		r.Conns, r.Rounds, r.DurationS, r.RateRPS = b.opts.Conns, b.opts.Rounds, b.opts.StreamDuration.Seconds(), b.opts.StreamRate
		fillOpen(&r, b.ttfb[s.Name])
		out = append(out, r)
	}
	if b.soak != nil {
		r := b.ri.record("orchestrator", "soak")
		r.Conns = b.opts.Conns
		r.Soak = b.soak
		out = append(out, r)
	}
	r = b.ri.record("orchestrator", "targets")
	r.Targets = checks
	r.NoisyReruns = &b.reruns
	out = append(out, r)
	return out
}

func fillTput(r *record, t *tputRounds) {
	r.RPS, r.RPSRounds = round3(median(t.rps)), round3s(t.rps)
	r.CPUUsPerReq, r.CPUUsPerReqRounds = round3(median(t.cpuUs)), round3s(t.cpuUs)
	r.MockCPUUsPerReq = round3(median(t.mockCPUUs))
	r.GenCPUUsPerReq = round3(median(t.genCPUUs))
	r.Errors, r.UnexpectedAns = t.errors, t.bad
	r.OtherCPUPct, r.StealPct = ptr(round3(median(t.otherPct))), ptr(round3(median(t.stealPct)))
}

func fillOpen(r *record, o *openRounds) {
	r.Samples = o.samples
	r.P50Ms, r.P99Ms, r.P999Ms, r.MaxMs = round3(median(o.p50)), round3(median(o.p99)), round3(median(o.p999)), round3(median(o.max))
	r.P99MsRounds = round3s(o.p99)
	r.SendLagP99Ms = round3(median(o.lagP99))
	r.CPUUsPerReq, r.CPUUsPerReqRounds = round3(median(o.cpuUs)), round3s(o.cpuUs)
	r.MockCPUUsPerReq = round3(median(o.mockCPUUs))
	r.Errors, r.UnexpectedAns = o.errors, o.bad
	r.OtherCPUPct, r.StealPct = ptr(round3(median(o.otherPct))), ptr(round3(median(o.stealPct)))
}

func ptr(v float64) *float64 { return &v }

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func round3s(v []float64) []float64 {
	out := make([]float64, len(v))
	for i := range v {
		out[i] = round3(v[i])
	}
	return out
}

// printTable writes the human summary: medians over the rounds, then the
// targets.
func (b *bench) printTable(w io.Writer, checks []targetCheck) {
	ri := b.ri
	commit := ri.Commit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	if ri.Dirty {
		commit += " (dirty)"
	}
	fmt.Fprintf(w, "\ngwbench run %s · commit %s · %s, %d CPUs · %s · %s\n", ri.RunID, commit, ri.Machine.CPUModel, ri.Machine.NProc, ri.Machine.GoVersion, ri.Machine.Kernel)
	fmt.Fprintf(w, "mock latency 0, %d connections, medians of %d alternating rounds (a closed-loop ratio is the median of the rounds' ratios);\nclosed loop %s/round, open loop %s/round; %d noisy rounds run again\n\n",
		b.opts.Conns, b.opts.Rounds, b.opts.Duration, b.opts.OpenDuration, b.reruns)

	a, p, c := b.tput["mock"], b.tput["proxy"], b.tput["orchestrator"]
	row := func(name string, va, vp, vc, cmp string) {
		line := fmt.Sprintf("%-46s %10s %10s %16s %14s", name, va, vp, vc, cmp)
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	row("metric", "(a) mock", "(b) proxy", "(c) orchestr.", "(c) vs (b)")
	ratio := func(x, y float64) string {
		if y == 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f×", x/y)
	}
	// paired is the verdict's ratio: the median of the rounds' ratios.
	paired := func(x, y []float64) string {
		if r, rounds := pairedRatio(x, y); len(rounds) > 0 {
			return fmt.Sprintf("%.2f×", r)
		}
		return "—"
	}
	diff := func(x, y float64) string { return fmt.Sprintf("%+.3f ms", x-y) }
	f0 := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	f1 := func(v float64) string { return fmt.Sprintf("%.1f", v) }
	f3 := func(v float64) string { return fmt.Sprintf("%.3f", v) }

	row(fmt.Sprintf("throughput, %d conns closed loop (req/s)", b.opts.Conns), f0(median(a.rps)), f0(median(p.rps)), f0(median(c.rps)), paired(c.rps, p.rps))
	row("CPU/req of the front process (µs)", f1(median(a.cpuUs)), f1(median(p.cpuUs)), f1(median(c.cpuUs)), paired(c.cpuUs, p.cpuUs))
	row("CPU/req of the mock (µs)", f1(median(a.mockCPUUs)), f1(median(p.mockCPUUs)), f1(median(c.mockCPUUs)), "")
	row("CPU/req of the load generator (µs)", f1(median(a.genCPUUs)), f1(median(p.genCPUUs)), f1(median(c.genCPUUs)), "")
	row("  other processes' CPU (% of machine)", f1(median(a.otherPct)), f1(median(p.otherPct)), f1(median(c.otherPct)), "")
	row("peak RSS of the front process (MiB)", f1(mib(b.peakRSS["mock"])), f1(mib(b.peakRSS["proxy"])), f1(mib(b.peakRSS["orchestrator"])), ratio(float64(b.peakRSS["orchestrator"]), float64(b.peakRSS["proxy"])))
	for _, rate := range b.opts.Rates {
		m := b.open[rate]
		for _, q := range []struct {
			name string
			get  func(*openRounds) []float64
		}{
			{"p50", func(o *openRounds) []float64 { return o.p50 }},
			{"p99", func(o *openRounds) []float64 { return o.p99 }},
			{"p99.9", func(o *openRounds) []float64 { return o.p999 }},
		} {
			va, vp, vc := median(q.get(m["mock"])), median(q.get(m["proxy"])), median(q.get(m["orchestrator"]))
			row(fmt.Sprintf("latency @%.0f/s %s (ms)", rate, q.name), f3(va), f3(vp), f3(vc), diff(vc, vp))
		}
		row(fmt.Sprintf("  CPU/req of the front @%.0f/s (µs)", rate), f1(median(m["mock"].cpuUs)), f1(median(m["proxy"].cpuUs)), f1(median(m["orchestrator"].cpuUs)), paired(m["orchestrator"].cpuUs, m["proxy"].cpuUs))
		row(fmt.Sprintf("  generator send lag @%.0f/s p99 (ms)", rate), f3(median(m["mock"].lagP99)), f3(median(m["proxy"].lagP99)), f3(median(m["orchestrator"].lagP99)), "")
		row(fmt.Sprintf("  other processes' CPU @%.0f/s (%%)", rate), f1(median(m["mock"].otherPct)), f1(median(m["proxy"].otherPct)), f1(median(m["orchestrator"].otherPct)), "")
	}
	t := b.ttfb
	row(fmt.Sprintf("stream TTFB @%.0f/s p50 (ms)", b.opts.StreamRate), f3(median(t["mock"].p50)), f3(median(t["proxy"].p50)), f3(median(t["orchestrator"].p50)), diff(median(t["orchestrator"].p50), median(t["proxy"].p50)))
	row(fmt.Sprintf("stream TTFB @%.0f/s p99 (ms)", b.opts.StreamRate), f3(median(t["mock"].p99)), f3(median(t["proxy"].p99)), f3(median(t["orchestrator"].p99)), diff(median(t["orchestrator"].p99), median(t["proxy"].p99)))
	row("reject path (role robot), closed loop (req/s)", "", "", f0(median(b.reject.rps)), paired(b.reject.rps, c.rps)+" of (c)")
	row("  CPU/req of the orchestrator, reject (µs)", "", "", f1(median(b.reject.cpuUs)), "")
	if s := b.soak; s != nil {
		row(fmt.Sprintf("soak %.0fs: RSS warm → end (MiB)", s.DurationS), "", "", fmt.Sprintf("%.1f → %.1f", mib(s.RSSWarmKB), mib(s.RSSEndKB)), fmt.Sprintf("%+.1f %%", s.GrowthPct))
	}

	if busy := b.busiest(); busy > noisyOtherPct {
		fmt.Fprintf(w, "\nWARNING: other processes used up to %.0f %% of the machine's CPU during a phase (median of its rounds): the tail latencies are noisy; rerun on a quiet machine\n", busy)
	}
	if late := b.pacerLate(); late > noisyPaceMs {
		fmt.Fprintf(w, "\nWARNING: the load generator's pacer was up to %.2f ms late at p99 in an open-loop phase (median of its rounds, after the reruns the budget allowed): the latency and time-to-first-byte rows measure the machine, not the gateway; rerun when it is steadier\n", late)
	}
	if errs := b.errorSummary(); errs != "" {
		fmt.Fprintf(w, "\nerrors: %s\n", errs)
	}
	fmt.Fprintln(w)
	for _, ch := range checks {
		verdict := "FAIL"
		if ch.Pass {
			verdict = "PASS"
		}
		fmt.Fprintf(w, "%s  %s\n", verdict, ch.Text)
	}
	fmt.Fprintf(w, "INFO  the reject path costs %.1f µs of orchestrator CPU per request, HTTP included (the < 10 µs target is for validation in-process: see make bench-go)\n",
		median(b.reject.cpuUs))
}

// noisyOtherPct is the share of the CPU other processes may use before the
// run warns that its tails are not to be trusted.
const noisyOtherPct = 5

// noisyPaceMs is the pacer's lateness, its p99 in ms, past which an
// open-loop round is run again (within -noisy-reruns) and the run warns. On
// a quiet machine it is 0.06–0.1 ms; a VM that stalls the generator for
// milliseconds makes every configuration's tail that long, whatever it does.
const noisyPaceMs = 0.5

// pacerLate is the highest median pacer lateness (p99, ms) of any
// open-loop phase.
func (b *bench) pacerLate() float64 {
	return b.worstOpen(func(o *openRounds) []float64 { return o.paceP99 })
}

// busiest is the highest median share of the CPU that other processes used
// in any phase.
func (b *bench) busiest() float64 {
	m := b.worstOpen(func(o *openRounds) []float64 { return o.otherPct })
	for _, s := range b.servers {
		m = max(m, median(b.tput[s.Name].otherPct))
	}
	return max(m, median(b.reject.otherPct))
}

// worstOpen is the highest median of one figure of the rounds over every
// open-loop phase: each rate's and the streamed one, of every configuration.
func (b *bench) worstOpen(figure func(*openRounds) []float64) float64 {
	var m float64
	for _, s := range b.servers {
		m = max(m, median(figure(b.ttfb[s.Name])))
		for _, rate := range b.opts.Rates {
			m = max(m, median(figure(b.open[rate][s.Name])))
		}
	}
	return m
}

// errorSummary lists every configuration that saw transport errors or
// unexpected statuses; empty when there were none.
func (b *bench) errorSummary() string {
	var parts []string
	note := func(name string, errs, bad int64) {
		if errs > 0 || bad > 0 {
			parts = append(parts, fmt.Sprintf("%s: %d transport errors, %d unexpected statuses", name, errs, bad))
		}
	}
	for _, s := range b.servers {
		note(s.Name+" throughput", b.tput[s.Name].errors, b.tput[s.Name].bad)
		for _, rate := range b.opts.Rates {
			o := b.open[rate][s.Name]
			note(fmt.Sprintf("%s @%.0f/s", s.Name, rate), o.errors, o.bad)
		}
		note(s.Name+" stream", b.ttfb[s.Name].errors, b.ttfb[s.Name].bad)
	}
	note("reject", b.reject.errors, b.reject.bad)
	return strings.Join(parts, "; ")
}

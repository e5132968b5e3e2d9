package main

import (
	"context"
	"fmt"
	"time"
)

// tputRounds collects one configuration's closed-loop rounds.
type tputRounds struct {
	rps, cpuUs, mockCPUUs []float64
	genCPUUs              []float64
	otherPct, stealPct    []float64
	errors, bad           int64
}

// openRounds collects one configuration's open-loop rounds at one rate.
type openRounds struct {
	p50, p99, p999, max, lagP99, paceP99, cpuUs, mockCPUUs []float64
	otherPct, stealPct                                     []float64
	samples                                                int
	errors, bad                                            int64
}

// perReqUs is CPU time per request in microseconds.
func perReqUs(cpu time.Duration, n int64) float64 {
	if n <= 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / float64(n)
}

// maxClosedRequests bounds a closed-loop phase by count as well as time:
// far more than the machine can serve in the window.
func maxClosedRequests(d time.Duration) int64 { return int64(d.Seconds()*200_000) + 100_000 }

// warmUp runs each configuration briefly (pools, heaps, the journal file) so
// that the first measured round is not the cold one.
func (b *bench) warmUp(ctx context.Context) error {
	for _, s := range b.servers {
		t := b.target(s, bodyPlain, 200)
		if _, err := closedLoop(ctx, t, b.opts.Conns, 0, b.opts.Warmup*2, maxClosedRequests(b.opts.Warmup*2)); err != nil {
			return fmt.Errorf("warm-up %s: %w", s.Name, err)
		}
	}
	return nil
}

// throughput runs the closed-loop rounds. In each, the configurations take
// turns of turnSlice within one window (interleavedLoop), in an order that
// rotates from round to round; then the reject path of the orchestrator is
// measured on its own.
func (b *bench) throughput(ctx context.Context) error {
	b.tput = map[string]*tputRounds{}
	for _, s := range b.servers {
		b.tput[s.Name] = &tputRounds{}
	}
	for r := range b.opts.Rounds {
		order := b.rotated(r)
		res, err := b.interleavedRound(ctx, order)
		if err != nil {
			return err
		}
		for i, s := range order {
			b.tput[s.Name].add(res[i])
			b.logf("throughput round %d/%d  %-12s %8.0f req/s  %6.1f µs CPU/req  (others %.0f %% CPU)", r+1, b.opts.Rounds, s.Name, res[i].RPS(), perReqUs(res[i].CPU.Watch[0], res[i].Requests), res[i].CPU.OtherPct)
		}
		rej, err := b.closedRound(ctx, "throughput reject", b.target(b.orch, bodyReject, 400), b.opts.RejectDuration)
		if err != nil {
			return err
		}
		b.reject.add(rej)
		b.logf("throughput round %d/%d  %-12s %8.0f req/s  %6.1f µs CPU/req  (others %.0f %% CPU)", r+1, b.opts.Rounds, "reject", rej.RPS(), perReqUs(rej.CPU.Watch[0], rej.Requests), rej.CPU.OtherPct)
	}
	return nil
}

// interleavedRound runs one round of the configurations in order, taking
// turns; again, within the run's budget of reruns, when other processes took
// a noisy share of the CPU during it.
func (b *bench) interleavedRound(ctx context.Context, order []*server) ([]closedResult, error) {
	ts := make([]target, len(order))
	for i, s := range order {
		ts[i] = b.target(s, bodyPlain, 200)
	}
	for {
		res, err := interleavedLoop(ctx, ts, b.opts.Conns, b.opts.Warmup, b.opts.Duration, turnSlice, maxClosedRequests(b.opts.Duration))
		if err != nil {
			return nil, fmt.Errorf("throughput: %w", err)
		}
		other := 0.0
		for _, r := range res {
			other = max(other, r.CPU.OtherPct)
		}
		if !b.again("throughput", other) {
			return res, nil
		}
	}
}

// closedRound runs one closed-loop round; again, within the run's budget
// of reruns, when other processes took a noisy share of the CPU during it.
func (b *bench) closedRound(ctx context.Context, what string, t target, d time.Duration) (closedResult, error) {
	for {
		res, err := closedLoop(ctx, t, b.opts.Conns, b.opts.Warmup, d, maxClosedRequests(d))
		if err != nil {
			return res, fmt.Errorf("%s: %w", what, err)
		}
		if !b.again(what, res.CPU.OtherPct) {
			return res, nil
		}
	}
}

// openRound is closedRound for an open-loop round, which is also run again
// when the load generator itself fell behind its schedule.
func (b *bench) openRound(ctx context.Context, what string, t target, sched schedule) (openResult, error) {
	for {
		res, err := openLoop(ctx, t, b.opts.Conns, sched)
		if err != nil {
			return res, fmt.Errorf("%s: %w", what, err)
		}
		if !b.openAgain(what, res.CPU.OtherPct, ms(res.Pace.P99)) {
			return res, nil
		}
	}
}

// again says whether to rerun a round in which other processes used
// otherPct of the CPU: a build next to the bench lands in the tails at
// random, and one noisy round of three can move a median. The budget
// (-noisy-reruns) bounds the run's length on a machine that stays busy.
func (b *bench) again(what string, otherPct float64) bool {
	if otherPct <= noisyOtherPct {
		return false
	}
	return b.rerun(what, fmt.Sprintf("other processes took %.0f %% of the CPU", otherPct))
}

// openAgain is again for an open-loop round, which is also rerun when the
// pacer's own lateness (its p99, in ms: openResult.Pace) passed noisyPaceMs:
// the machine did not let the generator keep its schedule (a stalled VM), so
// the round's tail measured the machine, not the target. The pacer hands a
// request out before any connection takes it, so a slow target cannot make
// its own round run again.
func (b *bench) openAgain(what string, otherPct, paceP99Ms float64) bool {
	if b.again(what, otherPct) {
		return true
	}
	if paceP99Ms <= noisyPaceMs {
		return false
	}
	return b.rerun(what, fmt.Sprintf("the load generator's pacer was %.2f ms late at p99", paceP99Ms))
}

// rerun takes one rerun from the run's budget, if any is left, and says why.
func (b *bench) rerun(what, why string) bool {
	if b.reruns >= b.opts.NoisyReruns {
		return false
	}
	b.reruns++
	b.logf("%s: %s; running the round again (%d of %d reruns)", what, why, b.reruns, b.opts.NoisyReruns)
	return true
}

func (t *tputRounds) add(r closedResult) {
	t.rps = append(t.rps, r.RPS())
	t.cpuUs = append(t.cpuUs, perReqUs(r.CPU.Watch[0], r.Requests))
	t.mockCPUUs = append(t.mockCPUUs, perReqUs(r.CPU.Watch[1], r.Requests))
	t.genCPUUs = append(t.genCPUUs, perReqUs(r.CPU.Self, r.Requests))
	t.otherPct = append(t.otherPct, r.CPU.OtherPct)
	t.stealPct = append(t.stealPct, r.CPU.StealPct)
	t.errors += r.Errors
	t.bad += r.Bad
}

// latency runs the open-loop rounds at each fixed rate.
func (b *bench) latency(ctx context.Context) error {
	b.open = map[float64]map[string]*openRounds{}
	for _, rate := range b.opts.Rates {
		m := map[string]*openRounds{}
		b.open[rate] = m
		for _, s := range b.servers {
			m[s.Name] = &openRounds{}
		}
		sched := schedule{Rate: rate, Duration: b.opts.OpenDuration}
		for r := range b.opts.Rounds {
			for _, s := range b.rotated(r) {
				res, err := b.openRound(ctx, fmt.Sprintf("latency @%.0f/s %s", rate, s.Name), b.target(s, bodyPlain, 200), sched)
				if err != nil {
					return err
				}
				m[s.Name].add(res, res.Latency)
				b.logf("latency @%.0f/s round %d/%d  %-12s p50 %.3f  p99 %.3f  p99.9 %.3f ms  (generator lag p99 %.3f ms, pacer %.3f, others %.0f %% CPU)",
					rate, r+1, b.opts.Rounds, s.Name, ms(res.Latency.P50), ms(res.Latency.P99), ms(res.Latency.P999), ms(res.Lag.P99), ms(res.Pace.P99), res.CPU.OtherPct)
			}
		}
	}
	return nil
}

// streamTTFB runs the open-loop rounds of streamed calls.
func (b *bench) streamTTFB(ctx context.Context) error {
	b.ttfb = map[string]*openRounds{}
	for _, s := range b.servers {
		b.ttfb[s.Name] = &openRounds{}
	}
	sched := schedule{Rate: b.opts.StreamRate, Duration: b.opts.StreamDuration}
	for r := range b.opts.Rounds {
		for _, s := range b.rotated(r) {
			res, err := b.openRound(ctx, "stream TTFB "+s.Name, b.target(s, bodyStream, 200), sched)
			if err != nil {
				return err
			}
			b.ttfb[s.Name].add(res, res.TTFB)
			b.logf("stream TTFB @%.0f/s round %d/%d  %-12s p50 %.3f  p99 %.3f ms  (pacer p99 %.3f ms, others %.0f %% CPU)", b.opts.StreamRate, r+1, b.opts.Rounds, s.Name, ms(res.TTFB.P50), ms(res.TTFB.P99), ms(res.Pace.P99), res.CPU.OtherPct)
		}
	}
	return nil
}

func (o *openRounds) add(r openResult, l latencySummary) {
	o.p50 = append(o.p50, ms(l.P50))
	o.p99 = append(o.p99, ms(l.P99))
	o.p999 = append(o.p999, ms(l.P999))
	o.max = append(o.max, ms(l.Max))
	o.lagP99 = append(o.lagP99, ms(r.Lag.P99))
	o.paceP99 = append(o.paceP99, ms(r.Pace.P99))
	o.cpuUs = append(o.cpuUs, perReqUs(r.CPU.Watch[0], int64(r.Sent)))
	o.mockCPUUs = append(o.mockCPUUs, perReqUs(r.CPU.Watch[1], int64(r.Sent)))
	o.otherPct = append(o.otherPct, r.CPU.OtherPct)
	o.stealPct = append(o.stealPct, r.CPU.StealPct)
	o.samples += l.N
	o.errors += int64(r.Errors)
	o.bad += int64(r.Bad)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// readPeakRSS reads each front process's VmHWM.
func (b *bench) readPeakRSS() {
	b.peakRSS = map[string]int64{}
	for _, s := range b.servers {
		if m, err := memory(s.Front.Pid()); err == nil {
			b.peakRSS[s.Name] = m.HWM
		}
	}
}

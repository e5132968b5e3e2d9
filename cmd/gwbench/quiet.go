package main

import (
	"context"
	"time"
)

// quietPct is the CPU share (of the whole machine) other processes may use
// for the machine to count as quiet.
const quietPct = 10

// waitQuiet waits, up to limit, until the machine has been quiet for three
// seconds in a row: the bench shares two cores, and a build running next to
// it shows up in every tail latency. It only waits; a run on a busy machine
// still runs, and its JSON lines say how busy it was (other_cpu_pct).
func (b *bench) waitQuiet(ctx context.Context, limit time.Duration) {
	deadline := time.Now().Add(limit)
	quiet := 0
	prev := snapCPU(target{})
	for quiet < 3 && time.Now().Before(deadline) {
		if !sleepCtx(ctx, time.Second) {
			return
		}
		cur := snapCPU(target{})
		other := cur.sub(prev).OtherPct
		prev = cur
		if other < quietPct {
			quiet++
			continue
		}
		quiet = 0
		b.logf("waiting for a quiet machine: other processes use %.0f %% of the CPU", other)
	}
	if quiet < 3 {
		b.logf("the machine is still busy after %s; running anyway", limit)
	}
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runTurns is `gwbench turns`: the throughput phase's turn-taking against
// servers that are already running, to compare two builds of the gateway
// (or two configurations) with the precision of one bench round: each
// target is a host:port and the pid whose CPU time per request is measured,
// and the first is the reference the others are divided by, round by round.
//
//	gwbench turns -targets 127.0.0.1:18002=PID,127.0.0.1:18081=PID,127.0.0.1:18082=PID -rounds 5
func runTurns(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gwbench turns", flag.ContinueOnError)
	fs.SetOutput(stderr)
	spec := fs.String("targets", "", "comma-separated host:port=pid, the first being the reference (127.0.0.1 or localhost only)")
	conns := fs.Int("conns", 32, "connections per target")
	rounds := fs.Int("rounds", 5, "rounds")
	duration := fs.Duration("duration", 3*time.Second, "sending time per target and round, in turns of 250 ms")
	warmup := fs.Duration("warmup", 500*time.Millisecond, "each target's first turn of a round, not counted")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ts, err := parseTurnTargets(*spec)
	if err == nil {
		err = loadLimits(*conns, *duration, *warmup)
	}
	if err == nil && (*rounds < 1 || *rounds > 100) {
		err = fmt.Errorf("-rounds must be in 1..100")
	}
	if err != nil {
		fmt.Fprintf(stderr, "gwbench turns: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cpu := make([][]float64, len(ts))
	for r := range *rounds {
		res, err := interleavedLoop(ctx, ts, *conns, *warmup, *duration, turnSlice, maxClosedRequests(*duration))
		if err != nil {
			fmt.Fprintf(stderr, "gwbench turns: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "round %d/%d", r+1, *rounds)
		for k, x := range res {
			us := perReqUs(x.CPU.Watch[0], x.Requests)
			cpu[k] = append(cpu[k], us)
			fmt.Fprintf(stdout, "  %s %.0f req/s %.1f µs/req", ts[k].Addr, x.RPS(), us)
			if x.Errors+x.Bad > 0 {
				fmt.Fprintf(stdout, " (%d errors, %d unexpected status)", x.Errors, x.Bad)
			}
		}
		fmt.Fprintln(stdout)
	}
	for k := 1; k < len(ts); k++ {
		m, each := pairedRatio(cpu[k], cpu[0])
		fmt.Fprintf(stdout, "%s / %s, CPU per request: %.3f× (rounds %s)\n", ts[k].Addr, ts[0].Addr, m, listRatios(each))
	}
	return 0
}

// parseTurnTargets reads host:port=pid,... into targets that send the
// bench's plain request.
func parseTurnTargets(spec string) ([]target, error) {
	var ts []target
	for _, f := range strings.Split(spec, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		addr, p, ok := strings.Cut(f, "=")
		pid, err := strconv.Atoi(p)
		if !ok || err != nil || pid <= 0 {
			return nil, fmt.Errorf("-targets: %q is not host:port=pid", f)
		}
		if !loopback(addr) {
			return nil, fmt.Errorf("-targets: %q: only 127.0.0.1 or localhost", addr)
		}
		ts = append(ts, target{Addr: addr, Req: buildRequest(addr, chatPath, bodyPlain), Expect: 200, Watch: []int{pid}})
	}
	if len(ts) < 2 {
		return nil, fmt.Errorf("-targets: give a reference and at least one target to compare with it")
	}
	return ts, nil
}

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

// runLoad is `gwbench load`: the closed loop of the throughput phase against
// servers that are already running, for profiling one of them (perf, strace,
// /debug/pprof) under the bench's own load. It prints the rate and, for each
// -pid, the CPU time per request.
func runLoad(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gwbench load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "host:port to send to (127.0.0.1 or localhost only)")
	conns := fs.Int("conns", 32, "connections")
	duration := fs.Duration("duration", 10*time.Second, "measured window (at most 10m)")
	warmup := fs.Duration("warmup", 500*time.Millisecond, "unmeasured load before the window")
	kind := fs.String("body", "plain", "plain | stream | reject: the bench's request bodies")
	pids := fs.String("pid", "", "comma-separated pids whose CPU time per request is reported")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if !loopback(*addr) {
		fmt.Fprintln(stderr, "gwbench load: -addr must be 127.0.0.1:PORT or localhost:PORT")
		return 2
	}
	if err := loadLimits(*conns, *duration, *warmup); err != nil {
		fmt.Fprintf(stderr, "gwbench load: %v\n", err)
		return 2
	}
	bodies := map[string]struct {
		body   []byte
		expect int
	}{"plain": {bodyPlain, 200}, "stream": {bodyStream, 200}, "reject": {bodyReject, 400}}
	b, ok := bodies[*kind]
	if !ok {
		fmt.Fprintf(stderr, "gwbench load: -body %q: want plain, stream or reject\n", *kind)
		return 2
	}
	t := target{Addr: *addr, Req: buildRequest(*addr, chatPath, b.body), Expect: b.expect}
	for _, f := range strings.Split(*pids, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			fmt.Fprintf(stderr, "gwbench load: -pid %q is not a process id\n", f)
			return 2
		}
		t.Watch = append(t.Watch, pid)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := closedLoop(ctx, t, *conns, *warmup, *duration, 1<<40)
	if err != nil {
		fmt.Fprintf(stderr, "gwbench load: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%.0f req/s over %s (%d requests, %d errors, %d unexpected status); generator %.1f µs/req\n",
		r.RPS(), r.Elapsed.Round(time.Millisecond), r.Requests, r.Errors, r.Bad, perReqUs(r.CPU.Self, r.Requests))
	for i, pid := range t.Watch {
		fmt.Fprintf(stdout, "pid %d: %.1f µs CPU/req\n", pid, perReqUs(r.CPU.Watch[i], r.Requests))
	}
	return 0
}

// loadLimits checks the flags `gwbench load` and `gwbench turns` share.
func loadLimits(conns int, duration, warmup time.Duration) error {
	if conns < 1 || conns > 1024 || duration <= 0 || duration > 10*time.Minute || warmup < 0 {
		return fmt.Errorf("-conns must be in 1..1024, -duration in (0, 10m] and -warmup not negative")
	}
	return nil
}

// loopback reports whether addr (host:port) is on this machine's loopback,
// the only place gwbench sends traffic to.
func loopback(addr string) bool {
	host, _, _ := strings.Cut(addr, ":")
	return host == "127.0.0.1" || host == "localhost"
}

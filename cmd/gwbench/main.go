// Command gwbench measures what the orchestrator adds to every call. In one
// run, in alternating rounds, with the same mock (latency 0), request body
// and connection count, it compares
//
//	(a) the mock provider called directly,
//	(b) a bare fasthttp reverse proxy in front of the mock (the floor of one
//	    extra hop: no parsing, no logic; gwbench itself, re-executed as
//	    `gwbench proxy`),
//	(c) the orchestrator in front of the mock, journal to a file,
//
// for closed-loop throughput (the configurations taking turns of 250 ms within
// each round), open-loop latency at fixed rates (free of coordinated omission), CPU time per request and peak RSS of the process in
// front (from /proc), a streamed call's time to first byte, the reject path's
// throughput, and the orchestrator's RSS over a soak. It appends JSON lines
// to -out and prints a table and the targets as PASS/FAIL lines.
//
//	gwbench -orchestrator bin/orchestrator -mock bin/mock-provider [-quick] [-soak 60s] [-strict]
//	gwbench proxy -listen ADDR -upstream ADDR
//	gwbench load -addr ADDR [-body plain|stream|reject] [-pid PID,...]
//	gwbench turns -targets ADDR=PID,ADDR=PID[,...] [-rounds 5]
//
// It builds nothing (make bench builds bin/ first) and sends traffic to
// 127.0.0.1 only. Linux only: it reads /proc.
package main

import (
	"context"
	"errors"
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

func main() {
	if len(os.Args) > 1 && os.Args[1] == "proxy" {
		os.Exit(runProxy(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "load" {
		os.Exit(runLoad(os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "turns" {
		os.Exit(runTurns(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the run's settings.
type options struct {
	Orchestrator, Mock string
	Out                string
	Conns, Rounds      int
	Warmup             time.Duration // before each closed-loop window, not counted
	Duration           time.Duration // closed-loop window per round
	RejectDuration     time.Duration
	OpenDuration       time.Duration
	Rates              []float64
	StreamRate         float64
	StreamDuration     time.Duration
	Soak, SoakWarmup   time.Duration
	LogFormat          string
	Strict, Keep       bool
	WaitQuiet          time.Duration
	NoisyReruns        int
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("gwbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Orchestrator, "orchestrator", "bin/orchestrator", "the orchestrator binary")
	fs.StringVar(&o.Mock, "mock", "bin/mock-provider", "the mock-provider binary")
	fs.StringVar(&o.Out, "out", "bench-results.jsonl", "file the JSON lines are appended to (empty: none)")
	fs.IntVar(&o.Conns, "conns", 32, "connections of every phase (closed-loop concurrency, open-loop pool)")
	fs.IntVar(&o.Rounds, "rounds", 5, "alternating rounds per phase; the median is reported, and a closed-loop ratio is the median of the rounds' ratios")
	fs.DurationVar(&o.Warmup, "warmup", 500*time.Millisecond, "unmeasured load before each closed-loop window (in the throughput phase, each configuration's first turn)")
	fs.DurationVar(&o.Duration, "duration", 3*time.Second, "closed-loop sending time per configuration and round, in turns of 250 ms")
	fs.DurationVar(&o.RejectDuration, "reject-duration", 2*time.Second, "reject-path closed-loop window per round")
	fs.DurationVar(&o.OpenDuration, "open-duration", 4*time.Second, "open-loop timeline per configuration, rate and round")
	rates := fs.String("rates", "1000,3000", "open-loop rates in req/s, comma-separated (the p99 target is checked at 1000)")
	fs.Float64Var(&o.StreamRate, "stream-rate", 500, "open-loop rate of the streamed calls, req/s")
	fs.DurationVar(&o.StreamDuration, "stream-duration", 3*time.Second, "streamed-call timeline per configuration and round")
	fs.DurationVar(&o.Soak, "soak", 60*time.Second, "closed-loop memory soak of the orchestrator (0: skip)")
	fs.DurationVar(&o.SoakWarmup, "soak-warmup", 0, "part of the soak before the reference RSS sample (default: min(10s, soak/4))")
	fs.StringVar(&o.LogFormat, "log-format", "", "the orchestrator's -log-format (default: its configuration's, text)")
	fs.IntVar(&o.NoisyReruns, "noisy-reruns", 8, "rounds that may be run again, in all, when other processes took over 5 % of the CPU during them, or (open loop) the load generator's pacer was over 0.5 ms late at p99")
	fs.BoolVar(&o.Strict, "strict", false, "exit 1 when a target fails")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temp dir (configuration, journal)")
	fs.DurationVar(&o.WaitQuiet, "wait-quiet", 0, "before starting, wait up to this long for the machine to be quiet (other processes under 10 % CPU for 3 s)")
	quick := fs.Bool("quick", false, "short phases (1-2 s) and a 10 s soak, for a smoke run; explicit flags win")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: gwbench [flags]\n       gwbench proxy -listen ADDR -upstream ADDR\n       gwbench load -addr ADDR [-conns N] [-duration D] [-body plain|stream|reject] [-pid PID,...]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range map[string]*time.Duration{
			"duration": &o.Duration, "reject-duration": &o.RejectDuration, "open-duration": &o.OpenDuration,
			"stream-duration": &o.StreamDuration, "warmup": &o.Warmup, "soak": &o.Soak,
		} {
			if set[name] {
				continue
			}
			switch name {
			case "warmup":
				*v = 300 * time.Millisecond
			case "soak":
				*v = 10 * time.Second
			case "open-duration":
				*v = 2 * time.Second
			default:
				*v = time.Second
			}
		}
	}
	for _, f := range strings.Split(*rates, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || r <= 0 {
			return o, fmt.Errorf("-rates: %q is not a positive number", f)
		}
		o.Rates = append(o.Rates, r)
	}
	if o.SoakWarmup == 0 {
		o.SoakWarmup = min(10*time.Second, o.Soak/4)
	}
	switch {
	case o.Conns < 1 || o.Conns > 1024:
		return o, errors.New("-conns must be in 1..1024")
	case o.Rounds < 1:
		return o, errors.New("-rounds must be at least 1")
	case o.NoisyReruns < 0:
		return o, errors.New("-noisy-reruns must not be negative")
	case o.Duration <= 0 || o.RejectDuration <= 0 || o.OpenDuration <= 0 || o.StreamDuration <= 0 || o.Warmup < 0 || o.Soak < 0:
		return o, errors.New("durations must be positive")
	case o.StreamRate <= 0:
		return o, errors.New("-stream-rate must be positive")
	case o.Duration+o.OpenDuration+o.Soak > time.Hour:
		return o, errors.New("a run is bounded to well under an hour; shorten the durations")
	}
	return o, nil
}

// estimate is the run's length from its options, for the first progress line.
func (o options) estimate() time.Duration {
	r := time.Duration(o.Rounds)
	closed := r * (3*(o.Warmup+o.Duration) + o.Warmup + o.RejectDuration)
	open := r * 3 * time.Duration(len(o.Rates)) * (o.OpenDuration + 50*time.Millisecond)
	stream := r * 3 * (o.StreamDuration + 50*time.Millisecond)
	return 3*2*o.Warmup + closed + open + stream + o.Soak + 2*time.Second
}

func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "gwbench: %v\n", err)
		return 2
	}
	if err := checkProc(); err != nil {
		fmt.Fprintf(stderr, "gwbench: %v\n", err)
		return 2
	}
	for _, p := range []string{opts.Orchestrator, opts.Mock} {
		if _, err := os.Stat(p); err != nil {
			fmt.Fprintf(stderr, "gwbench: %v (run make build first)\n", err)
			return 2
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	b := &bench{opts: opts, ri: newRunInfo(opts.Orchestrator), progress: stderr}
	defer b.tearDown()
	if opts.WaitQuiet > 0 {
		b.waitQuiet(ctx, opts.WaitQuiet)
	}
	b.logf("run %s: about %s", b.ri.RunID, opts.estimate().Round(time.Second))
	began := time.Now()
	if err := b.measure(ctx); err != nil {
		fmt.Fprintf(stderr, "gwbench: %v\n", err)
		return 1
	}
	checks := b.checks()
	b.printTable(stdout, checks)
	fmt.Fprintf(stdout, "\n(run took %s)\n", time.Since(began).Round(time.Second))
	if opts.Out != "" {
		if err := appendRecords(opts.Out, b.records(checks)); err != nil {
			fmt.Fprintf(stderr, "gwbench: %v\n", err)
			return 1
		}
		b.logf("appended the results to %s", opts.Out)
	}
	if opts.Strict {
		for _, c := range checks {
			if !c.Pass {
				return 1
			}
		}
	}
	return 0
}

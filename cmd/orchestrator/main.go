// Command orchestrator is the LLM reliability gateway: an OpenAI-compatible
// POST /v1/chat/completions that validates, retries, fails over and breaks
// circuits in front of OpenAI and Anthropic (or the mock provider).
//
//	orchestrator [-listen :8080] [-config FILE] [-log-format text|json]
//
// Without -config it runs on the embedded default: both providers on the mock
// at 127.0.0.1:8001. The journal (one line per transition) goes to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/llm-gateway/gateway/pipeline"
	"github.com/llm-gateway/gateway/pipeline/config"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	// The gateway's live heap is a few MiB, so Go's default GOGC=100 runs
	// the collector every few milliseconds under load; 400 trades a few more
	// MiB for a quarter of that work. GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	fs := flag.NewFlagSet("orchestrator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "address to listen on (default from the config, :8080)")
	path := fs.String("config", "", "YAML configuration file (default: the embedded demo configuration)")
	format := fs.String("log-format", "", "journal format: text or json (default from the config, text)")
	drain := fs.Duration("drain", 0, "how long shutdown waits for requests in flight (default from the config, server.drain_timeout, 30s)")
	printDefault := fs.Bool("print-default-config", false, "print the embedded default configuration and exit")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile (pprof) of the whole run to this file when the process stops, for `go tool pprof` (docs/performance.md)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "orchestrator: unexpected argument %q (the configuration file is -config FILE)\n", fs.Arg(0))
		return 2
	}
	if *printDefault {
		_, _ = os.Stdout.Write(config.DefaultYAML())
		return 0
	}
	cfg, err := config.Load(*path, os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "orchestrator: %v\n", err)
		return 2
	}
	if *listen != "" {
		cfg.Pipeline.Server.Listen = *listen
	}
	if *drain < 0 {
		fmt.Fprintf(stderr, "orchestrator: -drain %s is not valid; want a positive duration\n", *drain)
		return 2
	}
	if *drain > 0 {
		cfg.Pipeline.Server.DrainTimeout = *drain
	}
	if *format != "" {
		if *format != "text" && *format != "json" {
			fmt.Fprintf(stderr, "orchestrator: -log-format %q is not valid; want text or json\n", *format)
			return 2
		}
		cfg.Pipeline.Log.Format = *format
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "orchestrator: -cpuprofile: %v\n", err)
			return 2
		}
		defer func() {
			if err := stop(); err != nil {
				fmt.Fprintf(stderr, "orchestrator: -cpuprofile: %v\n", err)
			}
		}()
	}
	srv, err := pipeline.New(pipeline.Config{Settings: cfg.Pipeline, Providers: cfg.Providers, Log: stderr})
	if err != nil {
		fmt.Fprintf(stderr, "orchestrator: %v\n", err)
		return 2
	}
	ln, err := net.Listen("tcp", cfg.Pipeline.Server.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "orchestrator: %v\n", err)
		return 1
	}
	// Listen for signals before serving, so that a SIGTERM that comes right
	// after the start line still drains instead of killing the process.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		fmt.Fprintf(stderr, "orchestrator: %v\n", err)
		return 1
	case <-sig:
	}
	return shutdown(srv, cfg.Pipeline.Server.DrainTimeout, sig, stderr)
}

// shutdown drains the server: the requests in flight, streams included, get
// their whole answers for up to drain; a second signal stops waiting. The
// journal is flushed either way. It returns the exit code: 0 when every
// request finished.
func shutdown(srv *pipeline.Server, drain time.Duration, sig <-chan os.Signal, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	go func() {
		select {
		case <-sig:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := srv.Shutdown(ctx); err != nil {
		fmt.Fprintf(stderr, "orchestrator: shutdown: %v\n", err)
		return 1
	}
	return 0
}

// startCPUProfile starts a CPU profile into path; stop ends it and closes the
// file. The profile covers the whole run, drain included.
func startCPUProfile(path string) (stop func() error, err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

package main

import (
	"context"
	"fmt"
	"io"
	"os"
)

// server is one configuration under test.
type server struct {
	Name  string   // mock | proxy | orchestrator: the config field of the JSON lines
	Addr  string   // where the generator sends
	Front *process // the process the client talks to: its CPU and RSS are the ones reported
}

// The request bodies: the same for every configuration.
var (
	bodyPlain  = []byte(`{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}]}`)
	bodyStream = []byte(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}]}`)
	bodyReject = []byte(`{"model":"gpt-4o-mini","messages":[{"role":"robot","content":"Say hello to the benchmark."}]}`)
)

const chatPath = "/v1/chat/completions"

// bench is one run: the processes, the phases and what they measured.
type bench struct {
	opts     options
	ri       runInfo
	progress io.Writer

	procs   processes
	mock    *process
	servers []*server // (a), (b), (c)
	orch    *server
	tmp     string
	journal string     // the orchestrator's stderr
	files   []*os.File // the children's stderr files

	tput    map[string]*tputRounds
	reject  tputRounds
	open    map[float64]map[string]*openRounds
	ttfb    map[string]*openRounds
	soak    *soakResult
	peakRSS map[string]int64
	reruns  int // noisy rounds run again
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, "gwbench: "+format+"\n", args...)
}

func (b *bench) target(s *server, body []byte, expect int) target {
	return target{
		Addr:   s.Addr,
		Req:    buildRequest(s.Addr, chatPath, body),
		Expect: expect,
		Watch:  []int{s.Front.Pid(), b.mock.Pid()},
		Ours:   b.procs.pids(),
	}
}

// rotated is the round's order: each configuration goes first once every
// three rounds, so no one of them always follows (or precedes) another.
func (b *bench) rotated(round int) []*server {
	n := len(b.servers)
	out := make([]*server, n)
	for i := range n {
		out[i] = b.servers[(round+i)%n]
	}
	return out
}

// measure runs every phase in order.
func (b *bench) measure(ctx context.Context) error {
	phases := []func(context.Context) error{b.setUp, b.warmUp, b.throughput, b.latency, b.streamTTFB}
	for _, phase := range phases {
		if err := phase(ctx); err != nil {
			return err
		}
	}
	// Peak RSS of the comparison phases, before the soak adds its own.
	b.readPeakRSS()
	if b.opts.Soak > 0 {
		if err := b.soakMemory(ctx); err != nil {
			return err
		}
	}
	return nil
}

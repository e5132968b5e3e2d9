// Command mock-provider runs the mock OpenAI and Anthropic provider (package
// mock) on its own, for the demo and for load runs.
//
//	mock-provider -listen :8001 -latency 100ms
//
// It serves POST /v1/chat/completions (OpenAI), POST /v1/messages
// (Anthropic) and the /mock/ control API; see docs/mock.md.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/llm-gateway/gateway/mock"
)

func main() {
	log.SetFlags(0)
	if err := run(os.Args[1:]); err != nil {
		log.Fatalf("mock-provider: %v", err)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mock-provider", flag.ContinueOnError)
	listen := fs.String("listen", ":8001", "address to listen on")
	latency := fs.Duration("latency", 100*time.Millisecond, "latency added before each answer (0 for benchmarks)")
	jitter := fs.Duration("jitter", 0, "extra uniform random latency in [0, jitter)")
	seed := fs.Int64("seed", 1, "seed of the jitter's random generator")
	openAIKey := fs.String("openai-key", "", "the exact OpenAI key to require (empty: any non-empty key)")
	anthropicKey := fs.String("anthropic-key", "", "the exact Anthropic key to require (empty: any non-empty key)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *latency < 0 || *jitter < 0 {
		return fmt.Errorf("-latency and -jitter must not be negative")
	}

	srv := mock.New(mock.Config{
		Latency:      *latency,
		Jitter:       *jitter,
		Seed:         *seed,
		OpenAIKey:    *openAIKey,
		AnthropicKey: *anthropicKey,
	})
	addr, err := srv.Start(*listen)
	if err != nil {
		return err
	}
	log.Printf("INFO  action=start service=mock-provider listen=%s latency=%s jitter=%s seed=%d openai_key_required=%t anthropic_key_required=%t",
		addr, *latency, *jitter, *seed, *openAIKey != "", *anthropicKey != "")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	signal.Stop(sig)
	log.Printf("INFO  action=stop service=mock-provider signal=%s", s)
	return srv.Close()
}

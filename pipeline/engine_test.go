package pipeline

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llm-gateway/gateway/fsm"
	"github.com/llm-gateway/gateway/providers"
)

// scripted is a Provider whose outcomes are given in advance: it lets these
// tests drive the policy through exact sequences on a fake clock. (The
// end-to-end tests use the real adapters against the mock provider.)
type scripted struct {
	name    string
	clock   *providers.FakeClock
	latency time.Duration

	mu       sync.Mutex
	outcomes []error // nil = success; when exhausted, success
	calls    []providers.Call
}

func (s *scripted) Name() string { return s.name }

func (s *scripted) Complete(ctx context.Context, req *providers.ChatRequest, call providers.Call) (*providers.ChatResponse, error) {
	s.mu.Lock()
	s.calls = append(s.calls, call)
	var err error
	if len(s.outcomes) > 0 {
		err, s.outcomes = s.outcomes[0], s.outcomes[1:]
	}
	s.mu.Unlock()
	if s.latency > 0 {
		s.clock.Advance(s.latency)
	}
	if err != nil {
		return nil, err
	}
	text := "ok from " + s.name
	return &providers.ChatResponse{ID: "x", Object: "chat.completion", Choices: []providers.Choice{{Message: providers.AnswerMessage{Role: "assistant", Content: &text}, FinishReason: "stop"}}}, nil
}

func (s *scripted) Stream(context.Context, *providers.ChatRequest, providers.Call) (providers.Stream, error) {
	panic("not used")
}

func (s *scripted) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

func fail(class providers.Class, retryAfter time.Duration) error {
	return &providers.Error{Class: class, Provider: "p", RetryAfter: retryAfter, Message: string(class)}
}

type harness struct {
	t      *testing.T
	clock  *providers.FakeClock
	engine *Engine
	provs  map[string]*scripted
	mu     sync.Mutex
	trans  []fsm.Transition
	log    lockedLog // the journal
}

func newHarness(t *testing.T, p Policy, outcomes map[string][]error) *harness {
	s := Settings{Policy: p}
	s.ApplyDefaults()
	h := &harness{t: t, clock: providers.NewFakeClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)), provs: map[string]*scripted{}}
	provs := map[string]providers.Provider{}
	breakers := map[string]*providers.Breaker{}
	for _, name := range []string{"openai", "anthropic"} {
		sp := &scripted{name: name, clock: h.clock, outcomes: outcomes[name]}
		h.provs[name] = sp
		provs[name] = sp
		breakers[name] = providers.NewBreaker(name, providers.BreakerSettings{}, h.clock, h.record)
	}
	h.engine = NewEngine(EngineConfig{
		Policy: s.Policy,
		Routes: providers.Routes{"gpt-4": {{Provider: "openai", Model: "gpt-4"}, {Provider: "anthropic", Model: "claude"}}, "solo": {{Provider: "openai", Model: "gpt-4"}},
			"long": {{Provider: "openai", Model: "a"}, {Provider: "anthropic", Model: "b"}, {Provider: "openai", Model: "c"}, {Provider: "anthropic", Model: "d"}, {Provider: "openai", Model: "e"}}},
		Providers: provs,
		Breakers:  breakers,
		Clock:     h.clock,
		Journal:   NewJournal(&h.log, "text", h.clock.Now),
		Rand:      func() float64 { return 0.5 },
	})
	t.Cleanup(h.engine.journal.Close)
	return h
}

func (h *harness) record(t fsm.Transition) {
	h.mu.Lock()
	h.trans = append(h.trans, t)
	h.mu.Unlock()
}

// start runs one request in the background.
func (h *harness) start(ctx context.Context, model string) <-chan Result {
	m := fsm.Request.New("req_test", h.record, h.clock.Now)
	if _, err := m.Fire(ctx, fsm.EventValidate, fsm.Detail{}); err != nil {
		h.t.Fatal(err)
	}
	targets, _ := h.engine.routes.Lookup(model)
	done := make(chan Result, 1)
	go func() { done <- h.engine.Run(ctx, m, &providers.ChatRequest{Model: model}, targets, h.clock.Now()) }()
	return done
}

// expectSleep waits until the engine sleeps, checks for how long, and wakes it.
func (h *harness) expectSleep(want time.Duration) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.clock.WaitForSleepers(ctx, 1); err != nil {
		h.t.Fatalf("the engine never slept (wanted %s)", want)
	}
	if got := h.clock.Sleepers(); len(got) != 1 || got[0] != want {
		h.t.Fatalf("sleeping %v, want %s", got, want)
	}
	h.clock.Advance(want)
}

func (h *harness) result(done <-chan Result) Result {
	h.t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(5 * time.Second):
		h.t.Fatal("the engine did not finish")
		return Result{}
	}
}

// requestEvents is the sequence of request-machine events.
func (h *harness) requestEvents() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, t := range h.trans {
		if t.Machine == fsm.KindRequest {
			out = append(out, string(t.Event)+"@"+t.Provider)
		}
	}
	return out
}

func (h *harness) expectEvents(want ...string) {
	h.t.Helper()
	got := h.requestEvents()
	if len(got) != len(want) {
		h.t.Fatalf("events\n got %v\nwant %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			h.t.Fatalf("events\n got %v\nwant %v", got, want)
		}
	}
}

func TestEngineRetriesATimeoutAfterTwoThenFourSeconds(t *testing.T) {
	h := newHarness(t, Policy{}, map[string][]error{"openai": {fail(providers.ClassTimeout, 0), fail(providers.ClassTimeout, 0)}})
	done := h.start(context.Background(), "gpt-4")
	h.expectSleep(2 * time.Second)
	h.expectSleep(4 * time.Second)
	r := h.result(done)
	if r.Err != nil || r.Attempts != 3 || r.Provider != "openai" {
		t.Fatalf("result %+v", r)
	}
	h.expectEvents("validate@", "attempt@openai", "retry@openai", "attempt@openai", "retry@openai", "attempt@openai", "succeed@openai")
}

func TestEngineFailsOverAtOnceOnRateLimitConnectOverloadAndAuth(t *testing.T) {
	for _, class := range []providers.Class{providers.ClassRateLimited, providers.ClassConnect, providers.ClassOverloaded, providers.ClassAuth} {
		t.Run(string(class), func(t *testing.T) {
			h := newHarness(t, Policy{}, map[string][]error{"openai": {fail(class, 5*time.Second)}})
			r := h.result(h.start(context.Background(), "gpt-4"))
			if r.Err != nil || r.Attempts != 2 || r.Provider != "anthropic" {
				t.Fatalf("result %+v", r)
			}
			if n := len(h.clock.Sleepers()); n != 0 {
				t.Fatalf("%d sleepers: failover must not wait", n)
			}
			h.expectEvents("validate@", "attempt@openai", "failover@anthropic", "attempt@anthropic", "succeed@anthropic")
		})
	}
}

// A route longer than the run's inline room for its per-target counts.
func TestEngineWalksARouteOfFiveTargets(t *testing.T) {
	limited := fail(providers.ClassRateLimited, 0)
	h := newHarness(t, Policy{}, map[string][]error{"openai": {limited, limited}, "anthropic": {limited, limited}})
	r := h.result(h.start(context.Background(), "long"))
	if r.Err != nil || r.Attempts != 5 || r.Provider != "openai" {
		t.Fatalf("result %+v", r)
	}
	h.expectEvents("validate@", "attempt@openai", "failover@anthropic", "attempt@anthropic", "failover@openai", "attempt@openai",
		"failover@anthropic", "attempt@anthropic", "failover@openai", "attempt@openai", "succeed@openai")
}

func TestEngineUsesUpAttemptsThenFailsOver(t *testing.T) {
	server := fail(providers.ClassServer, 0)
	h := newHarness(t, Policy{}, map[string][]error{"openai": {server, server, server}})
	done := h.start(context.Background(), "gpt-4")
	h.expectSleep(2 * time.Second)
	h.expectSleep(4 * time.Second)
	r := h.result(done)
	if r.Err != nil || r.Attempts != 4 || r.Provider != "anthropic" {
		t.Fatalf("result %+v", r)
	}
}

func TestEngineHonoursRetryAfterLongerThanTheBackoff(t *testing.T) {
	h := newHarness(t, Policy{}, map[string][]error{"openai": {fail(providers.ClassServer, 7*time.Second)}})
	done := h.start(context.Background(), "solo")
	h.expectSleep(7 * time.Second)
	if r := h.result(done); r.Err != nil || r.Attempts != 2 {
		t.Fatalf("result %+v", r)
	}
}

func TestEngineEveryTargetRateLimitedWaitsThenOneMoreRound(t *testing.T) {
	h := newHarness(t, Policy{}, map[string][]error{
		"openai":    {fail(providers.ClassRateLimited, 2*time.Second)},
		"anthropic": {fail(providers.ClassRateLimited, 3*time.Second)},
	})
	done := h.start(context.Background(), "gpt-4")
	h.expectSleep(3 * time.Second)
	r := h.result(done)
	if r.Err != nil || r.Attempts != 3 || r.Provider != "openai" {
		t.Fatalf("result %+v", r)
	}
	h.expectEvents("validate@", "attempt@openai", "failover@anthropic", "attempt@anthropic", "retry@anthropic", "attempt@openai", "succeed@openai")
}

func TestEngineRateLimitWaitPastTheDeadlineIs429(t *testing.T) {
	h := newHarness(t, Policy{Deadline: 2 * time.Second}, map[string][]error{
		"openai":    {fail(providers.ClassRateLimited, 3*time.Second)},
		"anthropic": {fail(providers.ClassRateLimited, 3*time.Second)},
	})
	r := h.result(h.start(context.Background(), "gpt-4"))
	if r.Err == nil || r.Err.Status != 429 || r.Err.RetryAfter != 3*time.Second || r.Attempts != 2 {
		t.Fatalf("result %+v err %+v", r, r.Err)
	}
}

func TestEngineNeverStartsAWaitThatCrossesTheDeadline(t *testing.T) {
	to := fail(providers.ClassTimeout, 0)
	h := newHarness(t, Policy{Deadline: 5 * time.Second}, map[string][]error{"openai": {to, to, to}})
	done := h.start(context.Background(), "solo")
	h.expectSleep(2 * time.Second) // 2 s fits; the next 4 s would end at 6 s > 5 s
	r := h.result(done)
	if r.Err == nil || r.Err.Status != 504 || r.Attempts != 2 {
		t.Fatalf("result %+v err %+v", r, r.Err)
	}
}

func TestEngineCutsTheAttemptTimeoutToTheDeadline(t *testing.T) {
	h := newHarness(t, Policy{Deadline: 3 * time.Second, AttemptTimeout: 10 * time.Second}, nil)
	h.provs["openai"].latency = time.Second
	h.result(h.start(context.Background(), "solo"))
	if got := h.provs["openai"].calls[0].Timeout; got != 3*time.Second {
		t.Fatalf("attempt timeout %s, want the 3 s left before the deadline", got)
	}
}

func TestEngineGivesUpWhenTheClientLeavesDuringBackoff(t *testing.T) {
	h := newHarness(t, Policy{}, map[string][]error{"openai": {fail(providers.ClassServer, 0)}})
	ctx, cancel := context.WithCancel(context.Background())
	done := h.start(ctx, "solo")
	if err := h.clock.WaitForSleepers(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	r := h.result(done)
	if r.Err == nil || !r.Gone || r.Attempts != 1 {
		t.Fatalf("result %+v", r)
	}
	h.expectEvents("validate@", "attempt@openai", "retry@openai", "give_up@openai")
}

func TestEngineInvalidRequestGivesUpAfterOneAttempt(t *testing.T) {
	h := newHarness(t, Policy{}, map[string][]error{"openai": {&providers.Error{Class: providers.ClassInvalid, Status: 422, Message: "bad field x", Param: "x"}}})
	r := h.result(h.start(context.Background(), "gpt-4"))
	if r.Err == nil || r.Err.Status != 422 || r.Err.Message != "bad field x" || r.Attempts != 1 {
		t.Fatalf("result %+v err %+v", r, r.Err)
	}
	if h.provs["anthropic"].callCount() != 0 {
		t.Fatal("an invalid request must not fail over")
	}
}

func TestEngineRetryBudgetTurnsRetriesIntoFailover(t *testing.T) {
	h := newHarness(t, Policy{RetryBudget: BudgetSettings{Window: 10 * time.Second, Ratio: 0.0001, MinRetries: 1}}, map[string][]error{
		"openai": {fail(providers.ClassServer, 0), fail(providers.ClassServer, 0), fail(providers.ClassServer, 0)},
	})
	done := h.start(context.Background(), "gpt-4")
	h.expectSleep(2 * time.Second) // the one retry the budget allows
	r := h.result(done)
	if r.Err != nil || r.Provider != "anthropic" || r.Attempts != 3 {
		t.Fatalf("result %+v", r)
	}
	h.expectEvents("validate@", "attempt@openai", "retry@openai", "attempt@openai", "failover@anthropic", "attempt@anthropic", "succeed@anthropic")
}

// tripBreaker opens a provider's breaker through its own permits.
func (h *harness) tripBreaker(name string) {
	h.t.Helper()
	b := h.engine.breakers[name]
	for range 10 {
		if p, err := b.Admit(); err == nil {
			p.Done(fail(providers.ClassServer, 0))
		}
	}
	if b.State() != fsm.Open {
		h.t.Fatalf("the %s breaker is %s", name, b.State())
	}
}

// When every later target is passed over (here, its breaker open), the
// failing target is the route's last after all: a rate limit waits for its
// round, a transient failure for its backoff, instead of giving up at once.
func TestEngineTreatsATargetWhoseNextOnesArePassedOverAsTheLast(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		wait time.Duration
	}{
		{"rate limited", fail(providers.ClassRateLimited, 3*time.Second), 3 * time.Second},
		{"connect", fail(providers.ClassConnect, 0), 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Policy{}, map[string][]error{"openai": {tc.err}})
			h.tripBreaker("anthropic")
			done := h.start(context.Background(), "gpt-4")
			h.expectSleep(tc.wait)
			r := h.result(done)
			if r.Err != nil || r.Attempts != 2 || r.Provider != "openai" {
				t.Fatalf("result %+v err %+v", r, r.Err)
			}
			h.expectEvents("validate@", "attempt@openai", "retry@openai", "attempt@openai", "succeed@openai")
		})
	}
}

// A retry the budget refuses is said in the journal, once per attempt, even
// when the engine decides twice (its failover found no target to take it).
func TestEngineLogsARetryTheBudgetRefusedOnce(t *testing.T) {
	h := newHarness(t, Policy{RetryBudget: BudgetSettings{Window: 10 * time.Second, Ratio: 0.0001, MinRetries: 1}}, map[string][]error{
		"openai": {fail(providers.ClassServer, 0), fail(providers.ClassServer, 0), fail(providers.ClassServer, 0)},
	})
	h.tripBreaker("anthropic")
	done := h.start(context.Background(), "gpt-4")
	h.expectSleep(2 * time.Second) // the one retry the budget allows
	r := h.result(done)
	if r.Err == nil || r.Err.Status != 502 || r.Attempts != 2 {
		t.Fatalf("result %+v err %+v", r, r.Err)
	}
	h.engine.journal.Flush()
	out := h.log.take()
	if n := strings.Count(out, "action=retry_budget_exhausted request_id=req_test provider=openai attempt=2"); n != 1 {
		t.Fatalf("%d budget lines, want 1:\n%s", n, out)
	}
}

package pipeline

import (
	"testing"
	"time"
)

func TestBackoffDoublesFromTwoSecondsAndCaps(t *testing.T) {
	b := Backoff{Base: 2 * time.Second, Factor: 2, Max: 30 * time.Second, Jitter: JitterNone}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		if got := b.Wait(i+1, nil); got != w {
			t.Errorf("wait %d = %s, want %s", i+1, got, w)
		}
	}
	if got := b.Wait(1000, nil); got != 30*time.Second {
		t.Errorf("a huge exponent must cap, got %s", got)
	}
}

func TestBackoffJitterStaysInItsRange(t *testing.T) {
	for _, tc := range []struct {
		jitter   string
		rnd      float64
		min, max time.Duration
	}{
		{JitterFull, 0, 0, 0},
		{JitterFull, 0.5, 2 * time.Second, 2 * time.Second},
		{JitterEqual, 0, 2 * time.Second, 2 * time.Second},
		{JitterEqual, 0.999999, 3999 * time.Millisecond, 4 * time.Second},
	} {
		b := Backoff{Base: 2 * time.Second, Factor: 2, Max: 30 * time.Second, Jitter: tc.jitter}
		got := b.Wait(2, func() float64 { return tc.rnd }) // 4 s before jitter
		if got < tc.min || got > tc.max {
			t.Errorf("%s jitter with %g: %s, want in [%s, %s]", tc.jitter, tc.rnd, got, tc.min, tc.max)
		}
	}
}

func TestRetryAfterLengthensButNeverShortensTheWait(t *testing.T) {
	if got := retryWait(2*time.Second, 5*time.Second); got != 5*time.Second {
		t.Errorf("got %s", got)
	}
	if got := retryWait(4*time.Second, time.Second); got != 4*time.Second {
		t.Errorf("got %s", got)
	}
}

func TestNoWaitCrossesTheDeadline(t *testing.T) {
	now := time.Unix(1000, 0)
	deadline := now.Add(5 * time.Second)
	if !fits(now, 5*time.Second, deadline) {
		t.Error("a wait ending exactly at the deadline fits")
	}
	if fits(now, 5*time.Second+1, deadline) {
		t.Error("a wait ending past the deadline must not fit")
	}
	if got := attemptTimeout(now, 30*time.Second, deadline); got != 5*time.Second {
		t.Errorf("attempt timeout %s, want it cut to the deadline", got)
	}
}

func TestRetryBudgetAllowsTheFloorThenTheRatio(t *testing.T) {
	now := time.Unix(1000, 0)
	b := NewRetryBudget(BudgetSettings{Window: 10 * time.Second, Ratio: 0.2, MinRetries: 10}, func() time.Time { return now })
	for i := 0; i < 10; i++ {
		if !b.TryRetry() {
			t.Fatalf("retry %d refused inside the floor", i+1)
		}
	}
	if b.TryRetry() {
		t.Fatal("the 11th retry with no calls must be refused")
	}
	for i := 0; i < 100; i++ {
		b.Call()
	}
	// 100 calls allow 20 retries; 10 are taken.
	for i := 0; i < 10; i++ {
		if !b.TryRetry() {
			t.Fatalf("retry %d of the ratio refused", i+11)
		}
	}
	if b.TryRetry() {
		t.Fatal("retries past 20% of calls must be refused")
	}
	now = now.Add(10 * time.Second) // the window slides past everything
	if !b.TryRetry() {
		t.Fatal("a new window must allow retries again")
	}
}

func TestRetryBudgetWindowSlidesBucketByBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	b := NewRetryBudget(BudgetSettings{Window: 10 * time.Second, Ratio: 0, MinRetries: 2}, func() time.Time { return now })
	b.TryRetry()
	now = now.Add(5 * time.Second)
	b.TryRetry()
	if b.TryRetry() {
		t.Fatal("two retries in the window: the floor is spent")
	}
	now = now.Add(5 * time.Second) // the first retry's bucket leaves the window
	if !b.TryRetry() {
		t.Fatal("the oldest retry should have left the window")
	}
}

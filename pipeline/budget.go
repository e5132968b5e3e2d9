package pipeline

import (
	"sync"
	"time"
)

// RetryBudget caps the retries sent to one provider so that an outage cannot
// multiply the load on it: over a sliding window, retries may be at most
// Ratio of the provider's calls, but a quiet gateway may always make
// MinRetries. It is safe for concurrent use.
type RetryBudget struct {
	s   BudgetSettings
	now func() time.Time

	mu      sync.Mutex // guards the buckets
	buckets [budgetBuckets]budgetBucket
}

// The window is kept as a ring of buckets: the count is exact to one bucket's
// width (a tenth of the window).
const budgetBuckets = 10

type budgetBucket struct {
	slot    int64 // which window slice this bucket currently counts
	calls   int
	retries int
}

// NewRetryBudget returns an empty budget.
func NewRetryBudget(s BudgetSettings, now func() time.Time) *RetryBudget {
	return &RetryBudget{s: s, now: now}
}

func (b *RetryBudget) bucket() *budgetBucket {
	width := int64(b.s.Window) / budgetBuckets
	if width <= 0 {
		width = 1
	}
	slot := b.now().UnixNano() / width
	bk := &b.buckets[slot%budgetBuckets]
	if bk.slot != slot {
		*bk = budgetBucket{slot: slot}
	}
	return bk
}

func (b *RetryBudget) totals() (calls, retries int) {
	width := int64(b.s.Window) / budgetBuckets
	if width <= 0 {
		width = 1
	}
	oldest := b.now().UnixNano()/width - budgetBuckets + 1
	for i := range b.buckets {
		if b.buckets[i].slot >= oldest {
			calls += b.buckets[i].calls
			retries += b.buckets[i].retries
		}
	}
	return calls, retries
}

// Call records one call to the provider (first attempts and retries alike).
func (b *RetryBudget) Call() {
	b.mu.Lock()
	b.bucket().calls++
	b.mu.Unlock()
}

// TryRetry takes one retry from the budget, or reports that it is spent.
func (b *RetryBudget) TryRetry() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	calls, retries := b.totals()
	allowed := int(b.s.Ratio * float64(calls))
	if allowed < b.s.MinRetries {
		allowed = b.s.MinRetries
	}
	if retries >= allowed {
		return false
	}
	b.bucket().retries++
	return true
}

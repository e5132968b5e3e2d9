package pipeline

import (
	"math"
	"math/rand/v2"
	"time"
)

// BackoffWait is the wait before retry n (n = 1 after the first failure) on
// one target: Base * Factor^(n-1), capped at Max, with the configured jitter.
// rnd returns a float in [0,1); it is only called for jitter.
func (b Backoff) Wait(n int, rnd func() float64) time.Duration {
	if n < 1 {
		n = 1
	}
	w := float64(b.Base) * math.Pow(b.Factor, float64(n-1))
	if w > float64(b.Max) || math.IsInf(w, 0) || math.IsNaN(w) {
		w = float64(b.Max)
	}
	switch b.Jitter {
	case JitterFull:
		w = w * rnd()
	case JitterEqual:
		w = w/2 + w/2*rnd()
	}
	return time.Duration(w)
}

// defaultRand is the jitter source in production.
func defaultRand() float64 { return rand.Float64() }

// retryWait is the wait before the next attempt: the backoff, lengthened to
// what the provider asked for.
func retryWait(backoff, retryAfter time.Duration) time.Duration {
	if retryAfter > backoff {
		return retryAfter
	}
	return backoff
}

// fits reports whether a wait started at now ends before the deadline.
func fits(now time.Time, wait time.Duration, deadline time.Time) bool {
	return !now.Add(wait).After(deadline)
}

// attemptTimeout is the time one call may take: the configured timeout, cut
// short by the deadline.
func attemptTimeout(now time.Time, configured time.Duration, deadline time.Time) time.Duration {
	left := deadline.Sub(now)
	if left < configured {
		return left
	}
	return configured
}

// retryAfterSeconds rounds a wait up to whole seconds for a Retry-After
// header, at least 1.
func retryAfterSeconds(d time.Duration) int {
	s := int(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return s
}

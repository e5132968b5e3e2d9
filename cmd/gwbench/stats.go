package main

import (
	"math"
	"slices"
	"time"
)

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted: the smallest value with at least p % of the samples at or below
// it. No interpolation, so p99.9 of 4,000 samples is an observed latency
// (the 5th highest), not a blend of two. Zero for no samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// The epsilon keeps float error (99.9/100*1000 = 999.0000000000001)
	// from moving the rank up by one.
	rank := int(math.Ceil(p/100*float64(n) - 1e-9))
	return sorted[min(max(rank, 1), n)-1]
}

// latencySummary is the distribution of one run of samples.
type latencySummary struct {
	N              int
	P50, P99, P999 time.Duration
	Max            time.Duration
}

func summarize(samples []time.Duration) latencySummary {
	s := slices.Clone(samples)
	slices.Sort(s)
	l := latencySummary{
		N:    len(s),
		P50:  percentile(s, 50),
		P99:  percentile(s, 99),
		P999: percentile(s, 99.9),
	}
	if len(s) > 0 {
		l.Max = s[len(s)-1]
	}
	return l
}

// median of the rounds' values; the mean of the middle two for an even count.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// schedule is the open loop's fixed timeline: request i is due at
// Start + i/Rate, whatever happened to the ones before it. Latency is
// measured from that due time, so a stall of the server (or of the
// generator) is charged to every request it delayed, not hidden by sending
// fewer of them (coordinated omission).
type schedule struct {
	Rate     float64       // requests per second
	Duration time.Duration // length of the timeline
}

// Count is how many requests the timeline holds.
func (s schedule) Count() int {
	if s.Rate <= 0 || s.Duration <= 0 {
		return 0
	}
	return int(math.Floor(s.Rate * s.Duration.Seconds()))
}

// Due is the offset of request i from the start. It is computed from i, not
// by adding intervals, so rounding never accumulates into drift.
func (s schedule) Due(i int) time.Duration {
	return time.Duration(math.Round(float64(i) * float64(time.Second) / s.Rate))
}

// slope is the least-squares slope of ys over xs, in y units per x unit.
func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	if len(xs) < 2 || len(xs) != len(ys) {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

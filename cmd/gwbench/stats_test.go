package main

import (
	"math"
	"testing"
	"time"
)

func TestPercentileIsNearestRank(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond // 1..100 ms
	}
	thousand := make([]time.Duration, 1000)
	for i := range thousand {
		thousand[i] = time.Duration(i+1) * time.Microsecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty is zero", nil, 99, 0},
		{"one sample is every percentile", []time.Duration{7}, 99.9, 7},
		{"p50 of 1..100", hundred, 50, 50 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"p99.9 of 1..100 is the maximum", hundred, 99.9, 100 * time.Millisecond},
		{"p100 is the maximum", hundred, 100, 100 * time.Millisecond},
		{"p99.9 of 1..1000 is the 999th", thousand, 99.9, 999 * time.Microsecond},
		{"a tiny p is the minimum", hundred, 0.001, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarizeSortsACopy(t *testing.T) {
	in := []time.Duration{5, 1, 4, 2, 3}
	s := summarize(in)
	if s.N != 5 || s.P50 != 3 || s.P99 != 5 || s.Max != 5 {
		t.Errorf("summarize = %+v, want N 5, p50 3, p99 5, max 5", s)
	}
	if in[0] != 5 {
		t.Errorf("summarize reordered its input: %v", in)
	}
}

func TestMedianOfRounds(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{9, 1, 5}, 5},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// A VM that speeds up halfway through a run: the ratio of the two medians
// pairs the proxy's slow round with the orchestrator's fast one; the rounds'
// own ratios do not.
func TestPairedRatioIsTheMedianOfEachRoundsRatio(t *testing.T) {
	proxy := []float64{28.7, 31.3, 23.5}
	orch := []float64{47.5, 45.4, 35.3}
	got, rounds := pairedRatio(orch, proxy)
	if len(rounds) != 3 || math.Abs(got-35.3/23.5) > 1e-9 {
		t.Fatalf("pairedRatio = %v %v, want %v (round 3's)", got, rounds, 35.3/23.5)
	}
	if byMedians := median(orch) / median(proxy); math.Abs(byMedians-45.4/28.7) > 1e-9 {
		t.Fatalf("ratio of medians %v", byMedians)
	}
	// A round without a denominator is left out; extra rounds of one side too.
	got, rounds = pairedRatio([]float64{2, 9, 3, 7}, []float64{1, 0, 1})
	if len(rounds) != 2 || got != 2.5 {
		t.Fatalf("pairedRatio = %v %v, want 2.5 from rounds [2 3]", got, rounds)
	}
	if got, rounds := pairedRatio(nil, nil); got != 0 || len(rounds) != 0 {
		t.Fatalf("pairedRatio(nil, nil) = %v %v", got, rounds)
	}
}

func TestScheduleHoldsRateTimesDuration(t *testing.T) {
	tests := []struct {
		s    schedule
		want int
	}{
		{schedule{Rate: 1000, Duration: 4 * time.Second}, 4000},
		{schedule{Rate: 3000, Duration: 1500 * time.Millisecond}, 4500},
		{schedule{Rate: 333, Duration: time.Second}, 333},
		{schedule{Rate: 0.5, Duration: 3 * time.Second}, 1},
		{schedule{Rate: 0, Duration: time.Second}, 0},
		{schedule{Rate: 1000, Duration: 0}, 0},
	}
	for _, tt := range tests {
		if got := tt.s.Count(); got != tt.want {
			t.Errorf("%+v.Count() = %d, want %d", tt.s, got, tt.want)
		}
	}
}

func TestScheduleDueTimesAreEvenAndDoNotDrift(t *testing.T) {
	s := schedule{Rate: 3000, Duration: time.Minute} // 333,333.3 ns apart
	if got := s.Due(0); got != 0 {
		t.Errorf("Due(0) = %v, want 0", got)
	}
	if got, want := s.Due(1), 333333*time.Nanosecond; got != want {
		t.Errorf("Due(1) = %v, want %v", got, want)
	}
	// Adding rounded intervals would be 180,000 × 0.33 ns = 60 µs late by
	// now; computing from the index keeps it exact.
	if got, want := s.Due(180000), time.Minute; got != want {
		t.Errorf("Due(180000) = %v, want %v", got, want)
	}
	for i := 1; i < 1000; i++ {
		gap := s.Due(i) - s.Due(i-1)
		if math.Abs(float64(gap)-1e9/3000) > 1 {
			t.Fatalf("gap before request %d is %v, want 333.33 µs ± 1 ns", i, gap)
		}
	}
}

func TestSlopeIsLeastSquares(t *testing.T) {
	if got := slope([]float64{0, 1, 2, 3}, []float64{10, 12, 14, 16}); got != 2 {
		t.Errorf("slope of a line of slope 2 = %v", got)
	}
	if got := slope([]float64{0, 1, 2}, []float64{5, 5, 5}); got != 0 {
		t.Errorf("slope of a flat line = %v", got)
	}
	if got := slope([]float64{1}, []float64{1}); got != 0 {
		t.Errorf("slope of one point = %v, want 0", got)
	}
}

func TestFlatLimitIsTenPercentButAtLeastFiveMiB(t *testing.T) {
	if got := flatLimitKB(20 << 10); got != 5<<10 {
		t.Errorf("limit for 20 MiB = %d KiB, want 5 MiB", got)
	}
	if got := flatLimitKB(200 << 10); got != 20<<10 {
		t.Errorf("limit for 200 MiB = %d KiB, want 20 MiB", got)
	}
}

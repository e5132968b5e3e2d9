package pipeline

import (
	"strings"
	"testing"
)

func TestNewRequestID(t *testing.T) {
	const n = 20000
	seen := make(map[string]bool, n)
	var counts [36]int
	for range n {
		id := newRequestID()
		if len(id) != 28 || !strings.HasPrefix(id, "req_") || !validRequestID([]byte(id)) {
			t.Fatalf("malformed id %q", id)
		}
		if seen[id] {
			t.Fatalf("id %q minted twice", id)
		}
		seen[id] = true
		for _, c := range id[4:] {
			counts[strings.IndexRune(idAlphabet, c)]++
		}
	}
	// Every digit is uniform: each of the 36 symbols appears about
	// 24n/36 times. A bias of even a few percent on one symbol shows as a
	// chi-square far above 36 degrees of freedom's 99.99th percentile (~77).
	want := float64(24*n) / 36
	chi := 0.0
	for _, c := range counts {
		d := float64(c) - want
		chi += d * d / want
	}
	if chi > 80 {
		t.Fatalf("digits are not uniform: chi-square %.1f over %v", chi, counts)
	}
}

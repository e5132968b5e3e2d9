package pipeline

import (
	"testing"
	"time"
)

func TestAppendTimestampMatchesTheLayoutReplayReads(t *testing.T) {
	for _, ts := range []time.Time{
		time.Date(2026, 11, 26, 1, 2, 3, 456789123, time.UTC),
		time.Date(999, 1, 2, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.FixedZone("x", 3600)),
	} {
		want := ts.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
		if got := string(appendTimestamp(nil, ts)); got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

package pipeline

import (
	"sync"
	"testing"
	"time"

	"github.com/llm-gateway/gateway/fsm"
	"github.com/llm-gateway/gateway/providers/jsonenc"
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

func TestTheStampCacheFormatsLikeAppendTimestamp(t *testing.T) {
	var c stampCache
	base := time.Date(2026, 11, 26, 23, 59, 58, 999_000_000, time.UTC)
	times := []time.Time{time.Date(1969, 12, 31, 23, 59, 59, 500_000_000, time.UTC), time.Unix(0, 0)}
	for i := range 40 {
		times = append(times, base.Add(time.Duration(i)*97*time.Millisecond))
	}
	times = append(times, base.In(time.FixedZone("x", -7200)), base.Add(-time.Hour))
	var wg sync.WaitGroup
	for range 4 { // concurrent lines share one cache
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, ts := range times {
				if got, want := string(c.append(nil, ts)), string(appendTimestamp(nil, ts)); got != want {
					t.Errorf("cache %s, want %s", got, want)
				}
			}
		}()
	}
	wg.Wait()
}

// line.word writes its value as it is, in text and JSON alike: every name it
// is given must be a plain word.
func TestJournalWordsNeedNoQuoting(t *testing.T) {
	var words []string
	for _, d := range []*fsm.Definition{fsm.Request, fsm.Breaker} {
		words = append(words, string(d.Kind))
		for _, s := range d.States {
			words = append(words, string(s.State))
		}
		for _, r := range d.Rules {
			words = append(words, string(r.Event), actionOf(fsm.Transition{Machine: d.Kind, Event: r.Event}))
		}
	}
	words = append(words, "received")
	for _, w := range words {
		if needsQuote(w) || string(jsonenc.AppendString(nil, w)) != `"`+w+`"` {
			t.Errorf("%q is not a plain word", w)
		}
	}
}

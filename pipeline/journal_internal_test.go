package pipeline

import (
	"bytes"
	"strings"
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

// Every move's line, made from its fixed text (stepText), is the line made
// field by field, in both formats and with every optional field.
func TestTransitionLinesFromFixedTextAreFieldByField(t *testing.T) {
	at := time.Date(2026, 11, 26, 13, 0, 0, 123456000, time.UTC)
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		j := NewJournal(&buf, format, nil)
		for _, d := range []*fsm.Definition{fsm.Request, fsm.Breaker} {
			for i, st := range d.Steps() {
				tr := fsm.Transition{Machine: d.Kind, ID: "req_x y", Event: st.Event, From: st.From, To: st.To, Time: at, Step: i + 1,
					Detail: fsm.Detail{Attempt: 2, Provider: "openai", Model: "m", ErrorClass: "timeout", Wait: time.Second, Status: 503, Latency: time.Millisecond, Reason: "r s"}}
				j.Transition(tr)
				tr.Step = 0
				j.Transition(tr)
			}
		}
		j.Close()
		lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
		if len(lines) != 2*(len(fsm.Request.Steps())+len(fsm.Breaker.Steps())) {
			t.Fatalf("%s: %d lines", format, len(lines))
		}
		for i := 0; i < len(lines); i += 2 {
			if lines[i] != lines[i+1] {
				t.Errorf("%s: from fixed text\n%s\nfield by field\n%s", format, lines[i], lines[i+1])
			}
		}
	}
}

package pipeline

import (
	"encoding/json"
	"testing"
	"time"
)

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " and \ backslash`, "new\nline\ttab\rcr", "\x00\x01\x1f\x7f",
		"héllo wörld ✓ 日本", "bad \xff utf8 \xc3", "\u2028 and \u2029", "<html>&amp;",
	} {
		var want string
		b, _ := json.Marshal(s)
		_ = json.Unmarshal(b, &want)
		got := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q: %s is not JSON: %v", s, got, err)
		}
		if back != want {
			t.Fatalf("%q: decodes to %q, encoding/json gives %q", s, back, want)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add("hello \"x\" \\ \n \xff")
	f.Fuzz(func(t *testing.T, s string) {
		var want, back string
		b, _ := json.Marshal(s)
		_ = json.Unmarshal(b, &want)
		if err := json.Unmarshal(appendJSONString(nil, s), &back); err != nil || back != want {
			t.Fatalf("%q: %v %q != %q", s, err, back, want)
		}
	})
}

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

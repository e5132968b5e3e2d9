package jsonenc

import (
	"encoding/json"
	"testing"
)

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " and \ backslash`, "new\nline\ttab\rcr", "\x00\x01\x1f\x7f",
		"héllo wörld ✓ 日本", "bad \xff utf8 \xc3", "\u2028 and \u2029", "<html>&amp;",
	} {
		var want string
		b, _ := json.Marshal(s)
		_ = json.Unmarshal(b, &want)
		got := AppendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q: %s is not JSON: %v", s, got, err)
		}
		if back != want {
			t.Fatalf("%q: decodes to %q, encoding/json gives %q", s, back, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("hello \"x\" \\ \n \xff")
	f.Fuzz(func(t *testing.T, s string) {
		var want, back string
		b, _ := json.Marshal(s)
		_ = json.Unmarshal(b, &want)
		if err := json.Unmarshal(AppendString(nil, s), &back); err != nil || back != want {
			t.Fatalf("%q: %v %q != %q", s, err, back, want)
		}
	})
}

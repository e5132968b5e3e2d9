package jsonscan

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

var grammar = []string{
	`null`, `true`, `false`, `0`, `-0`, `1.5e-3`, `-12E+4`, `""`, `"a\"b\\c\/\b\f\n\r\t\u00e9"`,
	`[]`, `[1,"a",null]`, `{}`, `{"a":{"b":[{}]}}`, " \t\n\r{ \"a\" : [ 1 , 2 ] } ",
	`01`, `-`, `1.`, `.5`, `1e`, `+1`, `tru`, `nul`, `"a`, `"\x"`, `"\u12"`, `"\u12g4"`,
	"\"\x1f\"", `[1,]`, `{"a":1,}`, `{"a"}`, `{"a":}`, `{1:2}`, `[1 2]`, `{"a":1 "b":2}`,
	`]`, `}`, `[`, `{`, ``, ` `, `1 2`, `"é"`, strings.Repeat("[", MaxDepth+2) + strings.Repeat("]", MaxDepth+2),
}

func TestSkipAcceptsExactlyValidJSON(t *testing.T) {
	for _, doc := range grammar {
		checkSkip(t, []byte(doc))
	}
}

// checkSkip: for a UTF-8 document, Skip plus AtEnd accepts exactly what
// encoding/json calls valid, except documents nested deeper than MaxDepth,
// which it refuses.
func checkSkip(t *testing.T, doc []byte) {
	t.Helper()
	if !utf8.Valid(doc) {
		return
	}
	s := New(doc)
	got := s.Skip(0) && s.AtEnd()
	want := json.Valid(doc)
	switch {
	case got && !want:
		t.Fatalf("accepted invalid JSON %q", doc)
	case !got && want && depth(doc) <= MaxDepth:
		t.Fatalf("refused valid JSON %q", doc)
	}
}

// depth is the deepest nesting of doc, which is valid JSON.
func depth(doc []byte) int {
	dec := json.NewDecoder(strings.NewReader(string(doc)))
	d, max := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return max
		}
		switch tok {
		case json.Delim('['), json.Delim('{'):
			d++
			if d > max {
				max = d
			}
		case json.Delim(']'), json.Delim('}'):
			d--
		}
	}
}

func FuzzSkip(f *testing.F) {
	for _, doc := range grammar {
		f.Add([]byte(doc))
	}
	f.Fuzz(checkSkip)
}

func TestObjectRefusesARepeatedFieldAndAsksAboutOthers(t *testing.T) {
	fields := []string{"a", "b"}
	read := func(doc string, other func([]byte) bool) (map[string]string, bool) {
		s := New([]byte(doc))
		got := map[string]string{}
		ok := s.Object(fields, func(f string) bool {
			raw, ok := s.Raw()
			got[f] = string(raw)
			return ok
		}, other)
		return got, ok && s.AtEnd()
	}
	if got, ok := read(`{"b":[1], "x":{"a":2}, "a":"s"}`, nil); !ok || got["a"] != `"s"` || got["b"] != `[1]` || len(got) != 2 {
		t.Fatalf("read %v, %v", got, ok)
	}
	if _, ok := read(`{"a":1,"a":2}`, nil); ok {
		t.Fatal("accepted a repeated field")
	}
	if _, ok := read(`{"A":1}`, func(k []byte) bool { return string(k) != "A" }); ok {
		t.Fatal("accepted a key other refused")
	}
	if _, ok := read(`{"\u0061":1}`, nil); ok {
		t.Fatal("accepted an escaped key")
	}
	s := New([]byte(`{"\u0061":1,"b\n":{"\"":[]}}`))
	if !s.Skip(0) || !s.AtEnd() {
		t.Fatal("Skip refused escaped keys")
	}
}

func TestStrAndNumber(t *testing.T) {
	s := New([]byte(`"a\nb"`))
	if raw, esc, ok := s.Str(); !ok || !esc || string(raw) != `a\nb` {
		t.Fatalf("Str: %q %v %v", raw, esc, ok)
	}
	s = New([]byte(`-12.5e3,`))
	if num, ok := s.Number(); !ok || string(num) != `-12.5e3` || s.Pos() != 7 {
		t.Fatalf("Number: %q %v", num, ok)
	}
	for _, num := range []string{"0", "-0", "7", "-120", "1700000000", "9223372036854775807", "-9223372036854775808",
		"9223372036854775808", "-9223372036854775809", "18446744073709551615", "99999999999999999999", "12345678901234567890",
		"1.0", "1e3", "-12.5e3", "1E2", "0.5", "-", ""} {
		checkInt64(t, []byte(num))
	}
}

// checkInt64: Int64 reads a number exactly as strconv.ParseInt does.
func checkInt64(t *testing.T, num []byte) {
	t.Helper()
	v, ok := Int64(num)
	w, err := strconv.ParseInt(string(num), 10, 64)
	if ok != (err == nil) || ok && v != w {
		t.Fatalf("Int64(%q) = %d, %v; strconv.ParseInt: %d, %v", num, v, ok, w, err)
	}
}

// FuzzInt64 checks Int64 against strconv.ParseInt on every number Number
// reads.
func FuzzInt64(f *testing.F) {
	for _, s := range []string{"0", "-1", "1700000000", "9223372036854775807", "-9223372036854775808", "9223372036854775808", "1.5", "2e10"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := New(b)
		if num, ok := s.Number(); ok {
			checkInt64(t, num)
		}
	})
}

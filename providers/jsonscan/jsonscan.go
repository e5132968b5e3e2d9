// Package jsonscan reads JSON in one pass over its bytes, without reflection,
// for the two documents the gateway reads on every call: the client's request
// and the provider's answer. It checks the grammar of RFC 8259 as it goes and
// hands the caller the raw bytes of keys, strings and numbers; what they mean
// is the caller's business.
//
// A Scanner is a fast path, not a decoder of record. Its callers keep a
// reference decoder (encoding/json for requests, gjson for answers) and use
// it whenever the scanner meets something they do not handle exactly as the
// reference would; every method therefore reports failure with false and
// leaves the position undefined.
package jsonscan

// MaxDepth bounds the nesting of a value Skip checks; deeper documents fail
// and go to the caller's reference decoder, which has its own limit.
const MaxDepth = 256

// Scanner reads one document held in memory.
type Scanner struct {
	b []byte
	i int
}

// New returns a scanner at the start of b.
func New(b []byte) Scanner { return Scanner{b: b} }

// Pos is the offset of the next byte to read.
func (s *Scanner) Pos() int { return s.i }

// Since returns the bytes from offset start up to the current position; they
// alias the document.
func (s *Scanner) Since(start int) []byte { return s.b[start:s.i] }

// AtEnd skips whitespace and reports whether the document is over.
func (s *Scanner) AtEnd() bool {
	s.WS()
	return s.i == len(s.b)
}

// WS skips whitespace.
func (s *Scanner) WS() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// Peek skips whitespace and returns the next byte, or 0 at the end.
func (s *Scanner) Peek() byte {
	s.WS()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// Consume skips whitespace and reads c if it comes next.
func (s *Scanner) Consume(c byte) bool {
	if s.Peek() == c {
		s.i++
		return true
	}
	return false
}

// Literal reads word (true, false or null) if it comes next.
func (s *Scanner) Literal(word string) bool {
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

// Str reads a string at the current position (its opening quote) and returns
// the bytes between the quotes, and whether they hold an escape. Escapes are
// checked, not decoded; bytes of 0x80 and above are not checked (callers
// check UTF-8 over the whole document first).
func (s *Scanner) Str() (raw []byte, escaped, ok bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false, false
	}
	start := s.i + 1
	for i := start; i < len(s.b); i++ {
		c := s.b[i]
		switch {
		case c == '"':
			s.i = i + 1
			return s.b[start:i], escaped, true
		case c < 0x20:
			return nil, false, false
		case c == '\\':
			escaped = true
			i++
			if i >= len(s.b) {
				return nil, false, false
			}
			switch s.b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(s.b) {
					return nil, false, false
				}
				for _, h := range s.b[i+1 : i+5] {
					if !isHex(h) {
						return nil, false, false
					}
				}
				i += 4
			default:
				return nil, false, false
			}
		}
	}
	return nil, false, false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// Number reads a number and returns its bytes.
func (s *Scanner) Number() ([]byte, bool) {
	b, i := s.b, s.i
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		d := digits(b, i+1)
		if d == i+1 {
			return nil, false
		}
		i = d
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := digits(b, i)
		if d == i {
			return nil, false
		}
		i = d
	}
	s.i = i
	return b[start:i], true
}

// digits returns the end of the run of decimal digits that starts at i.
func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// Int64 is the value of a number read by Number that is an integer (no
// fraction, no exponent) within 64 bits, as strconv.ParseInt reads it; ok is
// false for any other. It is several times faster than checking for a
// fraction or an exponent and calling ParseInt, on the short integers of an
// answer (its created time, indexes and token counts).
func Int64(num []byte) (v int64, ok bool) {
	d := num
	neg := len(d) > 0 && d[0] == '-'
	if neg {
		d = d[1:]
	}
	// JSON has no leading zeros, so 20 digits or more overflow.
	if len(d) == 0 || len(d) > 19 {
		return 0, false
	}
	var u uint64 // 19 digits fit
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true // 1<<63 wraps to math.MinInt64, which it is
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}

// Skip reads any value, checking that it is valid JSON nested at most
// MaxDepth-depth deep.
func (s *Scanner) Skip(depth int) bool {
	if depth > MaxDepth {
		return false
	}
	switch s.Peek() {
	case '{':
		return s.Members(func([]byte, bool) bool { return s.Skip(depth + 1) })
	case '[':
		return s.Array(func() bool { return s.Skip(depth + 1) })
	case '"':
		_, _, ok := s.Str()
		return ok
	case 't':
		return s.Literal("true")
	case 'f':
		return s.Literal("false")
	case 'n':
		return s.Literal("null")
	default:
		_, ok := s.Number()
		return ok
	}
}

// Raw skips a value and returns its bytes, which alias the document.
func (s *Scanner) Raw() ([]byte, bool) {
	s.WS()
	start := s.i
	if !s.Skip(0) {
		return nil, false
	}
	return s.b[start:s.i], true
}

// Member reads what comes after an object's '{' or after its n-th value: the
// next key and its colon, or the closing '}' (end). The key is returned as
// it is written, between its quotes; escaped says it holds an escape, which
// is not decoded here.
func (s *Scanner) Member(n int) (key []byte, escaped, end, ok bool) {
	c := s.Peek()
	if c == '}' {
		s.i++
		return nil, false, true, true
	}
	if n > 0 {
		if c != ',' {
			return nil, false, false, false
		}
		s.i++
		s.WS()
	}
	key, escaped, ok = s.Str()
	if !ok || !s.Consume(':') {
		return nil, false, false, false
	}
	s.WS()
	return key, escaped, false, true
}

// Element reads what comes after an array's '[' or after its n-th value: the
// start of the next value, or the closing ']' (end).
func (s *Scanner) Element(n int) (end, ok bool) {
	c := s.Peek()
	if c == ']' {
		s.i++
		return true, true
	}
	if n > 0 {
		if c != ',' {
			return false, false
		}
		s.i++
		s.WS()
	}
	return false, true
}

// Object reads an object whose interesting keys are fields (at most 64):
// visit reads the value of each one present. A field that appears twice
// fails, since decoders disagree on what that means, and so does a key with
// an escape (it might spell a field). For any other key, other (if not nil)
// says whether it is acceptable, and its value is checked and skipped.
func (s *Scanner) Object(fields []string, visit func(field string) bool, other func(key []byte) bool) bool {
	var seen uint64
	return s.Members(func(key []byte, escaped bool) bool {
		if escaped {
			return false
		}
		f := -1
		for i, name := range fields {
			if string(key) == name {
				f = i
				break
			}
		}
		switch {
		case f >= 0 && seen&(1<<f) == 0:
			seen |= 1 << f
			return visit(fields[f])
		case f >= 0:
			return false
		default:
			return (other == nil || other(key)) && s.Skip(0)
		}
	})
}

// Members reads an object: visit gets each key, as Member returns it, and
// must read its value.
func (s *Scanner) Members(visit func(key []byte, escaped bool) bool) bool {
	if !s.Consume('{') {
		return false
	}
	for n := 0; ; n++ {
		key, escaped, end, ok := s.Member(n)
		if !ok {
			return false
		}
		if end {
			return true
		}
		if !visit(key, escaped) {
			return false
		}
	}
}

// Array reads an array: visit reads each element.
func (s *Scanner) Array(visit func() bool) bool {
	if !s.Consume('[') {
		return false
	}
	for n := 0; ; n++ {
		end, ok := s.Element(n)
		if !ok {
			return false
		}
		if end {
			return true
		}
		if !visit() {
			return false
		}
	}
}

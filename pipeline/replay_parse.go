package pipeline

import (
	"encoding/json"
	"strconv"
	"time"
)

// logRecord is one journal line, parsed. Its byte slices point into the line
// itself (or, for the rare value with escapes, into a fresh copy) and are
// valid only until the next line is read: whatever outlives the line is
// copied or interned by the replayer.
//
// Only the keys replay uses are kept; the others (message, listen, …) are
// skipped without being decoded.
type logRecord struct {
	action     []byte
	requestID  []byte
	machine    []byte
	event      []byte
	from, to   []byte
	provider   []byte
	model      []byte
	errClass   []byte
	reason     []byte
	ts         []byte
	attempt    []byte
	status     []byte
	upstream   []byte // upstream_status
	wait       []byte
	latency    []byte
	retryAfter []byte
	probeIn    []byte

	dupAction bool // "action" appeared twice: two lines spliced into one
}

// reset clears r for the next line without giving up anything it holds.
func (r *logRecord) reset() { *r = logRecord{} }

// escaping says how a value's quoted form is to be decoded.
type escaping uint8

const (
	plain      escaping = iota // val is the value itself
	goQuoted                   // quoted is a Go string literal with escapes
	jsonQuoted                 // quoted is a JSON string with escapes
)

// set files one key's value. Values of the keys replay uses are unescaped
// when they carry escapes (rare: the journal quotes only values with spaces,
// quotes or '='); the others are never looked at, so they cost nothing. The
// value "" is kept as present.
func (r *logRecord) set(key, val []byte, esc escaping, quoted []byte) {
	var dst *[]byte
	switch string(key) {
	case "action":
		if r.action != nil {
			r.dupAction = true
		}
		dst = &r.action
	case "request_id":
		dst = &r.requestID
	case "machine":
		dst = &r.machine
	case "event":
		dst = &r.event
	case "from":
		dst = &r.from
	case "to":
		dst = &r.to
	case "provider":
		dst = &r.provider
	case "model":
		dst = &r.model
	case "error":
		dst = &r.errClass
	case "reason":
		dst = &r.reason
	case "ts":
		dst = &r.ts
	case "attempt":
		dst = &r.attempt
	case "status":
		dst = &r.status
	case "upstream_status":
		dst = &r.upstream
	case "wait":
		dst = &r.wait
	case "latency":
		dst = &r.latency
	case "retry_after":
		dst = &r.retryAfter
	case "probe_in":
		dst = &r.probeIn
	default:
		return
	}
	if esc != plain {
		val = unescape(quoted, esc)
	}
	if val == nil {
		val = []byte{} // present but empty differs from absent
	}
	*dst = val
}

// parseLine parses one line of either format into r and reports whether it is
// a well-formed journal line. It never allocates for a line whose values
// carry no escapes.
func parseLine(line []byte, r *logRecord) bool {
	r.reset()
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if len(line) > 0 && line[0] == '{' {
		return parseJSONLine(line, r)
	}
	return parseTextLine(line, r)
}

// parseTextLine parses `LEVEL key=value key="quoted value" …`: a level of
// capital letters, then space-separated pairs whose values are bare or
// Go-quoted (strconv.Quote), as the journal writes them.
func parseTextLine(line []byte, r *logRecord) bool {
	i := 0
	for i < len(line) && line[i] >= 'A' && line[i] <= 'Z' {
		i++
	}
	if i < 3 || i > 5 || i >= len(line) || line[i] != ' ' {
		return false
	}
	for {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		if i == len(line) {
			return true
		}
		ks := i
		for i < len(line) && isKeyByte(line[i]) {
			i++
		}
		if i == ks || i == len(line) || line[i] != '=' {
			return false
		}
		key := line[ks:i]
		i++
		if i < len(line) && line[i] == '"' {
			j, escaped := i+1, false
			for j < len(line) && line[j] != '"' {
				if line[j] == '\\' {
					escaped = true
					j++
				}
				j++
			}
			if j >= len(line) {
				return false // unterminated quote
			}
			esc := plain
			if escaped {
				esc = goQuoted
			}
			r.set(key, line[i+1:j], esc, line[i:j+1])
			i = j + 1
			if i < len(line) && line[i] != ' ' {
				return false
			}
			continue
		}
		vs := i
		for i < len(line) && line[i] != ' ' {
			if line[i] == '"' {
				return false // a quote inside a bare value: not ours
			}
			i++
		}
		r.set(key, line[vs:i], plain, nil)
	}
}

func isKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c == '_' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c == '.' || c == '-'
}

// unescape decodes a quoted literal (quotes included). It allocates, and is
// called only for the keys replay uses. The journal quotes JSON values with
// strconv.Quote too, whose \x and \U escapes are not JSON: a value that does
// not decode as JSON is tried as Go, and one that decodes as neither is kept
// as written rather than losing the line.
func unescape(quoted []byte, esc escaping) []byte {
	var s string
	if esc == jsonQuoted && json.Unmarshal(quoted, &s) == nil {
		return []byte(s)
	}
	s, err := strconv.Unquote(string(quoted))
	if err != nil {
		return quoted[1 : len(quoted)-1]
	}
	return []byte(s)
}

// parseJSONLine parses one flat JSON object. Nested objects and arrays are
// skipped (the journal writes none, other programs might); numbers and
// literals are kept as their text, so "attempt":1 reads like attempt=1.
func parseJSONLine(line []byte, r *logRecord) bool {
	i := skipSpace(line, 1)
	if i < len(line) && line[i] == '}' {
		return skipSpace(line, i+1) == len(line)
	}
	for {
		if i >= len(line) || line[i] != '"' {
			return false
		}
		ke, escaped := jsonStringEnd(line, i)
		if ke < 0 {
			return false
		}
		key := line[i+1 : ke]
		if escaped {
			key = nil // no key of ours needs escaping
		}
		i = skipSpace(line, ke+1)
		if i >= len(line) || line[i] != ':' {
			return false
		}
		i = skipSpace(line, i+1)
		if i >= len(line) {
			return false
		}
		switch c := line[i]; {
		case c == '"':
			ve, escaped := jsonStringEnd(line, i)
			if ve < 0 {
				return false
			}
			esc := plain
			if escaped {
				esc = jsonQuoted
			}
			if key != nil {
				r.set(key, line[i+1:ve], esc, line[i:ve+1])
			}
			i = ve + 1
		case c == '{' || c == '[':
			end := skipJSONComposite(line, i)
			if end < 0 {
				return false
			}
			i = end
		default:
			vs := i
			for i < len(line) && line[i] != ',' && line[i] != '}' && line[i] != ' ' && line[i] != '\t' {
				i++
			}
			if i == vs || !jsonScalar(line[vs:i]) {
				return false
			}
			if key != nil {
				r.set(key, line[vs:i], plain, nil)
			}
		}
		i = skipSpace(line, i)
		if i >= len(line) {
			return false
		}
		switch line[i] {
		case ',':
			i = skipSpace(line, i+1)
		case '}':
			return skipSpace(line, i+1) == len(line)
		default:
			return false
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	return i
}

// jsonStringEnd returns the index of the quote closing the string that opens
// at b[i], and whether the string holds escapes; -1 if it never closes.
func jsonStringEnd(b []byte, i int) (int, bool) {
	escaped := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j, escaped
		}
	}
	return -1, false
}

// skipJSONComposite returns the index just past the object or array opening
// at b[i], or -1. It only balances brackets outside strings: validity of the
// insides is not replay's concern.
func skipJSONComposite(b []byte, i int) int {
	depth := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '"':
			end, _ := jsonStringEnd(b, j)
			if end < 0 {
				return -1
			}
			j = end
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return j + 1
			}
		}
	}
	return -1
}

// jsonScalar accepts a JSON number or literal.
func jsonScalar(v []byte) bool {
	switch string(v) {
	case "true", "false", "null":
		return true
	}
	for i, c := range v {
		if !(c >= '0' && c <= '9' || c == '-' && i == 0 || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
			return false
		}
	}
	return true
}

// parseInt reads a non-negative decimal integer; ok is false for anything
// else (including an absent value).
func parseInt(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// parseDuration reads what time.Duration.String writes ("1.001s", "2m30s",
// "150ms", "500µs", "0s"), without allocating. A leading '-' is accepted.
func parseDuration(b []byte) (time.Duration, bool) {
	if len(b) == 0 {
		return 0, false
	}
	neg := false
	if b[0] == '-' {
		neg, b = true, b[1:]
	}
	if string(b) == "0" {
		return 0, true
	}
	var total float64
	for len(b) > 0 {
		i := 0
		var whole, frac, scale float64 = 0, 0, 1
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			whole = whole*10 + float64(b[i]-'0')
			i++
		}
		digits := i
		if i < len(b) && b[i] == '.' {
			i++
			for i < len(b) && b[i] >= '0' && b[i] <= '9' {
				frac = frac*10 + float64(b[i]-'0')
				scale *= 10
				i++
				digits++
			}
		}
		if digits == 0 {
			return 0, false
		}
		us := i
		for i < len(b) && (b[i] < '0' || b[i] > '9') && b[i] != '.' {
			i++
		}
		var unit float64
		switch string(b[us:i]) {
		case "ns":
			unit = 1
		case "us", "µs", "μs":
			unit = float64(time.Microsecond)
		case "ms":
			unit = float64(time.Millisecond)
		case "s":
			unit = float64(time.Second)
		case "m":
			unit = float64(time.Minute)
		case "h":
			unit = float64(time.Hour)
		default:
			return 0, false
		}
		total += (whole + frac/scale) * unit
		b = b[i:]
	}
	if total > float64(1<<62) {
		return 0, false
	}
	d := time.Duration(total + 0.5)
	if neg {
		d = -d
	}
	return d, true
}

// parseTimestamp reads the journal's timestamp, UTC with microseconds
// ("2026-11-26T00:12:00.123456Z"), by hand; any other RFC 3339 form goes
// through time.Parse. It returns Unix nanoseconds.
func parseTimestamp(b []byte) (int64, bool) {
	if len(b) >= 20 && b[4] == '-' && b[7] == '-' && b[10] == 'T' && b[13] == ':' && b[16] == ':' && b[len(b)-1] == 'Z' {
		year, ok1 := digits(b[0:4])
		month, ok2 := digits(b[5:7])
		day, ok3 := digits(b[8:10])
		hour, ok4 := digits(b[11:13])
		minute, ok5 := digits(b[14:16])
		sec, ok6 := digits(b[17:19])
		nanos, ok7 := 0, true
		rest := b[19 : len(b)-1]
		if len(rest) > 0 {
			if rest[0] != '.' || len(rest) < 2 || len(rest) > 10 {
				ok7 = false
			} else {
				var f int
				f, ok7 = digits(rest[1:])
				for k := len(rest) - 1; k < 9; k++ {
					f *= 10
				}
				nanos = f
			}
		}
		if ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7 && month >= 1 && month <= 12 && day >= 1 && day <= 31 && hour < 24 && minute < 60 && sec < 61 {
			days := daysFromCivil(year, month, day)
			return ((days*24+int64(hour))*60+int64(minute))*60*1e9 + int64(sec)*1e9 + int64(nanos), true
		}
	}
	if len(b) < 20 || len(b) > 40 {
		return 0, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return 0, false
	}
	return t.UnixNano(), true
}

func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// daysFromCivil counts days from 1970-01-01 to y-m-d in the proleptic
// Gregorian calendar (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

// spliceStart finds where a second journal line starts inside line, after a
// crash cut the first one short and the restarted process appended to the
// same file: the level of a text line or the opening of a JSON one. It
// returns -1 when there is none.
func spliceStart(line []byte) int {
	for i := 1; i < len(line); i++ {
		switch line[i] {
		case 'I':
			if hasPrefixAt(line, i, "INFO  ") {
				return i
			}
		case 'W':
			if hasPrefixAt(line, i, "WARN  ") {
				return i
			}
		case 'E':
			if hasPrefixAt(line, i, "ERROR ") {
				return i
			}
		case '{':
			if hasPrefixAt(line, i, `{"level":`) {
				return i
			}
		}
	}
	return -1
}

func hasPrefixAt(b []byte, i int, p string) bool {
	return len(b)-i >= len(p) && string(b[i:i+len(p)]) == p
}

package pipeline

import (
	"bufio"
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/llm-gateway/gateway/fsm"
	"github.com/llm-gateway/gateway/providers"
	"github.com/llm-gateway/gateway/providers/jsonenc"
)

// Journal writes the log: one line per transition of every machine, plus the
// lines that carry no event (received, failed, skipped, start). The lines are
// the transition record that `fsmctl replay` reads back (DESIGN §6). It is
// safe for concurrent use; lines are buffered and flushed at least every
// FlushEvery, and on Flush and Close.
type Journal struct {
	json bool
	now  func() time.Time

	mu  sync.Mutex // guards w and closed
	w   *bufio.Writer
	out io.Writer

	closed bool
	stop   chan struct{}
	done   chan struct{}

	stamp stampCache
	steps [2][]stepText // per machine (machineOf), per move (Definition.Steps)
}

// stepText is the fixed text of one move's line: its action field, and the
// machine, event, from and to fields with the ts key, formatted once for
// the journal's format instead of field by field on every transition.
type stepText struct {
	action, tail string
}

// stepTexts formats every move of d as Transition would, field by field.
func stepTexts(d *fsm.Definition, json bool) []stepText {
	out := make([]stepText, len(d.Steps()))
	for i, st := range d.Steps() {
		t := fsm.Transition{Machine: d.Kind, Event: st.Event, From: st.From, To: st.To}
		l := &line{json: json}
		l.word("action", actionOf(t))
		action := string(l.b)
		l.b = l.b[:0]
		l.move(t)
		l.key("ts")
		if json {
			l.b = append(l.b, '"')
		}
		out[i] = stepText{action: action, tail: string(l.b)}
	}
	return out
}

// stepText returns the fixed text of t's move, or nil when t names no move
// of its machine (a record made by hand, or with a wrong Step).
func (j *Journal) stepText(t fsm.Transition) *stepText {
	m, d := machineOf(t.Machine)
	i, ok := d.StepOf(t)
	if !ok {
		return nil
	}
	return &j.steps[m][i]
}

// machineOf is where the journal and the metrics keep what they hold per
// move of a kind of machine (0 request, 1 breaker), and its definition.
func machineOf(k fsm.Kind) (int, *fsm.Definition) {
	if k == fsm.KindBreaker {
		return 1, fsm.Breaker
	}
	return 0, fsm.Request
}

// stampCache keeps the date and time of the latest second a line was
// stamped in: the thousands of lines of one second under load then format
// only their microseconds.
type stampCache struct {
	last atomic.Pointer[stampSecond]
}

type stampSecond struct {
	unix   int64
	prefix [20]byte // 2006-01-02T15:04:05.
}

// append appends t as appendTimestamp does.
func (c *stampCache) append(b []byte, t time.Time) []byte {
	t = t.UTC()
	s := c.last.Load()
	if s == nil || s.unix != t.Unix() {
		s = &stampSecond{unix: t.Unix()}
		var full [32]byte
		copy(s.prefix[:], appendTimestamp(full[:0], t))
		c.last.Store(s)
	}
	b = append(b, s.prefix[:]...)
	b = appendDigits(b, t.Nanosecond()/1000, 6)
	return append(b, 'Z')
}

// journalBuffer is how many bytes of lines are written at once. Each write
// to a file costs the kernel a fixed part (the inode's times, the
// filesystem's journal) on top of the copy: with 64 KiB, a loaded gateway
// wrote every 4 ms and that part was 2 % of its CPU (docs/performance.md).
// FlushEvery still bounds how long a line waits.
const journalBuffer = 256 << 10

// FlushEvery is how long a written line may wait in the buffer.
const FlushEvery = 50 * time.Millisecond

// NewJournal writes to out in "text" or "json" format.
func NewJournal(out io.Writer, format string, now func() time.Time) *Journal {
	if now == nil {
		now = time.Now
	}
	j := &Journal{
		json: format == "json",
		now:  now,
		out:  out,
		w:    bufio.NewWriterSize(out, journalBuffer),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for _, d := range fsm.Definitions() {
		m, _ := machineOf(d.Kind)
		j.steps[m] = stepTexts(d, j.json)
	}
	go j.flusher()
	return j
}

func (j *Journal) flusher() {
	defer close(j.done)
	t := time.NewTicker(FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			j.Flush()
		case <-j.stop:
			return
		}
	}
}

// Flush writes out every buffered line.
func (j *Journal) Flush() {
	j.mu.Lock()
	_ = j.w.Flush()
	j.mu.Unlock()
}

// Close flushes and stops the background flusher. Lines written after Close
// go straight to the output.
func (j *Journal) Close() {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return
	}
	j.closed = true
	_ = j.w.Flush()
	j.mu.Unlock()
	close(j.stop)
	<-j.done
}

// Log levels.
const (
	levelInfo  = "INFO"
	levelWarn  = "WARN"
	levelError = "ERROR"
)

// actionOf names the log action of a transition (DESIGN §6).
func actionOf(t fsm.Transition) string {
	if t.Machine == fsm.KindBreaker {
		return string(t.Event)
	}
	switch t.Event {
	case fsm.EventValidate:
		return "validated"
	case fsm.EventReject:
		return "rejected"
	case fsm.EventRetry:
		return "backoff"
	case fsm.EventSucceed:
		return "success"
	case fsm.EventGiveUp:
		return "gave_up"
	default:
		return string(t.Event)
	}
}

// Transition logs one transition; it is the fsm.Hook of every machine.
func (j *Journal) Transition(t fsm.Transition) {
	level := levelInfo
	switch {
	case t.Event == fsm.EventGiveUp || t.Event == fsm.EventTrip || t.Event == fsm.EventReopen:
		level = levelWarn
	}
	st := j.stepText(t)
	l := j.begin(level)
	if t.Machine == fsm.KindBreaker {
		l.str("provider", t.ID)
	} else {
		l.str("request_id", t.ID)
	}
	if st != nil {
		l.b = append(l.b, st.action...)
	} else {
		l.word("action", actionOf(t))
	}
	if t.Machine != fsm.KindBreaker && t.Provider != "" {
		l.str("provider", t.Provider)
	}
	if t.Attempt != 0 {
		l.int("attempt", t.Attempt)
	}
	if t.Model != "" {
		l.str("model", t.Model)
	}
	if t.ErrorClass != "" {
		l.str("error", t.ErrorClass)
	}
	if t.Wait != 0 {
		l.dur("wait", t.Wait)
	}
	if t.Status != 0 {
		l.int("status", t.Status)
	}
	if t.Latency != 0 {
		l.dur("latency", t.Latency)
	}
	if t.Reason != "" {
		l.str("reason", t.Reason)
	}
	if st != nil {
		l.b = append(l.b, st.tail...)
		l.b = l.stamp.append(l.b, t.Time)
		if l.json {
			l.b = append(l.b, '"')
		}
	} else {
		l.move(t)
		l.ts(t.Time)
	}
	j.end(l)
}

// Received logs a request's arrival, read at at (zero means now); replay
// starts a new journey here.
func (j *Journal) Received(id, model string, stream bool, at time.Time) {
	l := j.begin(levelInfo)
	l.str("request_id", id)
	l.word("action", "received")
	if model != "" {
		l.str("model", truncate(model, 200))
	}
	if stream {
		l.str("stream", "true")
	}
	if at.IsZero() {
		at = j.now()
	}
	l.ts(at)
	j.end(l)
}

// Failed logs the outcome of one failed attempt. It is not a transition: the
// transition that follows (backoff, failover, gave_up) says what was decided.
// An auth failure is logged at ERROR: it is a configuration problem.
func (j *Journal) Failed(id string, attempt int, provider string, err error, latency time.Duration) {
	class := providers.ClassOf(err)
	level := levelWarn
	if class == providers.ClassAuth {
		level = levelError
	}
	l := j.begin(level)
	l.str("request_id", id)
	l.str("action", "failed")
	l.int("attempt", attempt)
	l.str("provider", provider)
	l.str("error", string(class))
	if pe, ok := err.(*providers.Error); ok {
		if pe.Status != 0 {
			l.int("upstream_status", pe.Status)
		}
		if pe.RetryAfter != 0 {
			l.dur("retry_after", pe.RetryAfter)
		}
		if pe.Message != "" {
			l.str("message", truncate(pe.Message, 200))
		}
	}
	l.dur("latency", latency)
	l.ts(j.now())
	j.end(l)
}

// Skipped logs a target passed over because its breaker is open.
func (j *Journal) Skipped(id, provider string, state fsm.State, probeIn time.Duration) {
	l := j.begin(levelInfo)
	l.str("request_id", id)
	l.str("action", "skipped")
	l.str("provider", provider)
	l.str("reason", "breaker_"+string(state))
	if probeIn > 0 {
		l.dur("probe_in", probeIn)
	}
	l.ts(j.now())
	j.end(l)
}

// Unsupported logs a target passed over because its provider cannot serve
// this request (providers.Checker): replay counts it as skipped.
func (j *Journal) Unsupported(id, provider string, err error) {
	l := j.begin(levelInfo)
	l.str("request_id", id)
	l.str("action", "skipped")
	l.str("provider", provider)
	l.str("reason", "unsupported")
	var pe *providers.Error
	if errors.As(err, &pe) {
		if pe.Param != "" {
			l.str("param", pe.Param)
		}
		l.str("message", truncate(pe.Message, 200))
	} else {
		l.str("message", truncate(err.Error(), 200))
	}
	l.ts(j.now())
	j.end(l)
}

// Joined marks where a continued stream was joined: the text streamed from
// the provider that failed ended at offset bytes, and the rest comes from
// the next one.
func (j *Journal) Joined(id string, attempt int, from, to string, offset int) {
	l := j.begin(levelInfo)
	l.str("request_id", id)
	l.str("action", "joined")
	l.int("attempt", attempt)
	l.str("provider", to)
	l.str("from_provider", from)
	l.int("offset", offset)
	l.ts(j.now())
	j.end(l)
}

// Start logs the orchestrator's start: replay resets every breaker here.
func (j *Journal) Start(kv ...string) {
	l := j.begin(levelInfo)
	l.str("action", "start")
	for i := 0; i+1 < len(kv); i += 2 {
		l.str(kv[i], kv[i+1])
	}
	l.ts(j.now())
	j.end(l)
}

// Message logs a free-form operational line (not part of any journey).
func (j *Journal) Message(level, action string, kv ...string) {
	l := j.begin(level)
	l.str("action", action)
	for i := 0; i+1 < len(kv); i += 2 {
		l.str(kv[i], kv[i+1])
	}
	l.ts(j.now())
	j.end(l)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// line builds one log line in the journal's format.
type line struct {
	b     []byte
	json  bool
	first bool
	stamp *stampCache
}

var linePool = sync.Pool{New: func() any { return &line{b: make([]byte, 0, 512)} }}

func (j *Journal) begin(level string) *line {
	l := linePool.Get().(*line)
	l.b = l.b[:0]
	l.json = j.json
	l.first = true
	l.stamp = &j.stamp
	if l.json {
		l.b = append(l.b, `{"level":"`...)
		l.b = append(l.b, level...)
		l.b = append(l.b, '"')
		l.first = false
	} else {
		l.b = append(l.b, level...)
		for i := len(level); i < 6; i++ {
			l.b = append(l.b, ' ')
		}
	}
	return l
}

func (j *Journal) end(l *line) {
	if l.json {
		l.b = append(l.b, '}')
	}
	l.b = append(l.b, '\n')
	j.mu.Lock()
	if j.closed {
		_, _ = j.out.Write(l.b)
	} else {
		_, _ = j.w.Write(l.b)
	}
	j.mu.Unlock()
	if cap(l.b) <= 4096 {
		linePool.Put(l)
	}
}

func (l *line) key(k string) {
	if l.json {
		if !l.first {
			l.b = append(l.b, ',')
		}
		l.b = append(l.b, '"')
		l.b = append(l.b, k...)
		l.b = append(l.b, `":`...)
	} else {
		if !l.first {
			l.b = append(l.b, ' ')
		}
		l.b = append(l.b, k...)
		l.b = append(l.b, '=')
	}
	l.first = false
}

func (l *line) str(k, v string) {
	l.key(k)
	switch {
	case l.json:
		l.b = jsonenc.AppendString(l.b, v) // strconv's quoting is not JSON for control bytes
	case needsQuote(v):
		l.b = strconv.AppendQuote(l.b, v)
	default:
		l.b = append(l.b, v...)
	}
}

// word is str for a value that never needs quoting or escaping: the names
// of actions, machines, events and states (TestJournalWordsNeedNoQuoting).
func (l *line) word(k, v string) {
	l.key(k)
	if l.json {
		l.b = append(l.b, '"')
		l.b = append(l.b, v...)
		l.b = append(l.b, '"')
		return
	}
	l.b = append(l.b, v...)
}

// move appends the fields that name t's move: machine, event, from, to.
func (l *line) move(t fsm.Transition) {
	l.word("machine", string(t.Machine))
	l.word("event", string(t.Event))
	l.word("from", string(t.From))
	l.word("to", string(t.To))
}

func (l *line) int(k string, v int) {
	l.key(k)
	l.b = strconv.AppendInt(l.b, int64(v), 10)
}

func (l *line) dur(k string, d time.Duration) {
	l.key(k)
	if d >= time.Millisecond {
		d = d.Round(time.Microsecond)
	}
	if l.json {
		l.b = append(l.b, '"')
	}
	l.b = append(l.b, d.String()...)
	if l.json {
		l.b = append(l.b, '"')
	}
}

func (l *line) ts(t time.Time) {
	l.key("ts")
	if l.json {
		l.b = append(l.b, '"')
	}
	l.b = l.stamp.append(l.b, t)
	if l.json {
		l.b = append(l.b, '"')
	}
}

// needsQuote reports whether a text value must be quoted to stay one token.
func needsQuote(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f {
			return true
		}
	}
	return false
}

// appendTimestamp appends t in UTC as 2006-01-02T15:04:05.000000Z, the
// layout replay reads, several times faster than time.AppendFormat.
func appendTimestamp(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, min, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, min, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond()/1000, 6)
	return append(b, 'Z')
}

// appendDigits appends n zero-padded to width digits.
func appendDigits(b []byte, n, width int) []byte {
	var buf [8]byte
	for i := width - 1; i >= 0; i-- {
		buf[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, buf[:width]...)
}

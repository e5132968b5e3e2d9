package mock

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Fault kinds, as named in rules, stats and the log.
const (
	// FaultTimeout answers normally, but only after DelayMS (default 10 s).
	FaultTimeout = "timeout"
	// FaultRateLimit answers 429 with retry-after (RetryAfterS, default 1)
	// and retry-after-ms.
	FaultRateLimit = "rate_limit"
	// FaultServerError answers Status (default 500) in the provider's error
	// format.
	FaultServerError = "server_error"
	// FaultOverloaded answers Anthropic's 529 overloaded_error; on the OpenAI
	// side, a 503 in OpenAI's error format.
	FaultOverloaded = "overloaded"
	// FaultMalformed answers 200 with a JSON content type and a body cut in
	// the middle (for a streamed call, an SSE event whose data is cut so).
	FaultMalformed = "malformed"
	// FaultReset closes the TCP connection abruptly (RST), without answering.
	FaultReset = "reset"
	// FaultHang never answers: the connection stays open until the client
	// closes it or the server is closed.
	FaultHang = "hang"
	// FaultStreamCut sends about half of a stream, then closes the connection
	// without the chunked terminator, so the client sees an unexpected EOF.
	// Non-streamed calls skip such a rule without consuming it.
	FaultStreamCut = "stream_cut"
	// FaultStreamStall sends about half of a stream, then sends nothing more
	// while holding the connection open, until the client closes it or the
	// server is closed: an upstream that stalls mid-stream. Non-streamed
	// calls skip such a rule without consuming it.
	FaultStreamStall = "stream_stall"
	// FaultStreamTruncate sends about half of a stream, then ends its body
	// cleanly (the chunked terminator), without the provider's end marker
	// ([DONE] for OpenAI, message_stop for Anthropic): a stream that reads
	// as complete to anything that checks only the framing. Non-streamed
	// calls skip such a rule without consuming it.
	FaultStreamTruncate = "stream_truncate"
)

// Defaults for a rule's zero fields.
const (
	DefaultTimeoutDelay = 10 * time.Second
	DefaultRetryAfterS  = 1
	DefaultErrorStatus  = 500
)

var faultOutcomes = map[string]outcome{
	FaultTimeout:        outcomeTimeout,
	FaultRateLimit:      outcomeRateLimit,
	FaultServerError:    outcomeServerError,
	FaultOverloaded:     outcomeOverloaded,
	FaultMalformed:      outcomeMalformed,
	FaultReset:          outcomeReset,
	FaultHang:           outcomeHang,
	FaultStreamCut:      outcomeStreamCut,
	FaultStreamStall:    outcomeStreamStall,
	FaultStreamTruncate: outcomeStreamTruncate,
}

// Rule injects one fault into the next Count matching requests (0: until
// the rules are cleared). Rules apply in the order added, each consuming
// its count; a request is matched against them only after it passed the
// auth and body checks.
type Rule struct {
	Provider    string `json:"provider"`      // ProviderOpenAI, ProviderAnthropic or ProviderAny ("" means ProviderAny)
	Fault       string `json:"fault"`         // one of the Fault constants
	Count       int    `json:"count"`         // requests left to fault; 0: until cleared
	DelayMS     int    `json:"delay_ms"`      // FaultTimeout: the delay; 0 means 10000
	RetryAfterS int    `json:"retry_after_s"` // FaultRateLimit: the Retry-After; 0 means 1
	Status      int    `json:"status"`        // FaultServerError: the status, 400–599; 0 means 500
}

// maxDelayMS bounds a rule's delay_ms (and retry_after_s): a day.
const maxDelayMS = 24 * 60 * 60 * 1000

// ErrInvalidRule wraps every error AddFault returns for a bad rule.
var ErrInvalidRule = errors.New("mock: invalid fault rule")

// normalize validates r and fills in its defaults.
func (r Rule) normalize() (Rule, error) {
	switch r.Provider {
	case "":
		r.Provider = ProviderAny
	case ProviderOpenAI, ProviderAnthropic, ProviderAny:
	default:
		return r, fmt.Errorf("%w: unknown provider %q (want %q, %q or %q)", ErrInvalidRule, r.Provider, ProviderOpenAI, ProviderAnthropic, ProviderAny)
	}
	if _, ok := faultOutcomes[r.Fault]; !ok {
		return r, fmt.Errorf("%w: unknown fault %q (want one of timeout, rate_limit, server_error, overloaded, malformed, reset, hang, stream_cut, stream_stall, stream_truncate)", ErrInvalidRule, r.Fault)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"count", r.Count}, {"delay_ms", r.DelayMS}, {"retry_after_s", r.RetryAfterS}, {"status", r.Status}} {
		if f.v < 0 {
			return r, fmt.Errorf("%w: %s must not be negative, got %d", ErrInvalidRule, f.name, f.v)
		}
	}
	if r.Status != 0 && (r.Status < 400 || r.Status > 599) {
		return r, fmt.Errorf("%w: status must be between 400 and 599, got %d", ErrInvalidRule, r.Status)
	}
	// A delay past a day would overflow time.Duration at the top of the
	// range (a negative wait: no delay at all); none is useful anyway.
	if r.DelayMS > maxDelayMS {
		return r, fmt.Errorf("%w: delay_ms must be at most %d (a day), got %d", ErrInvalidRule, maxDelayMS, r.DelayMS)
	}
	if r.RetryAfterS > maxDelayMS/1000 {
		return r, fmt.Errorf("%w: retry_after_s must be at most %d (a day), got %d", ErrInvalidRule, maxDelayMS/1000, r.RetryAfterS)
	}
	// A field that the fault does not use is a mistake in the rule, not
	// something to store and ignore.
	switch {
	case r.Status != 0 && r.Fault != FaultServerError:
		return r, fmt.Errorf("%w: status applies only to server_error, not %s", ErrInvalidRule, r.Fault)
	case r.RetryAfterS != 0 && r.Fault != FaultRateLimit:
		return r, fmt.Errorf("%w: retry_after_s applies only to rate_limit, not %s", ErrInvalidRule, r.Fault)
	case r.DelayMS != 0 && r.Fault != FaultTimeout:
		return r, fmt.Errorf("%w: delay_ms applies only to timeout, not %s", ErrInvalidRule, r.Fault)
	}
	switch r.Fault {
	case FaultTimeout:
		if r.DelayMS == 0 {
			r.DelayMS = int(DefaultTimeoutDelay / time.Millisecond)
		}
	case FaultRateLimit:
		if r.RetryAfterS == 0 {
			r.RetryAfterS = DefaultRetryAfterS
		}
	case FaultServerError:
		if r.Status == 0 {
			r.Status = DefaultErrorStatus
		}
	}
	return r, nil
}

func (r Rule) matches(p provider, stream bool) bool {
	if r.Provider != ProviderAny && r.Provider != p.String() {
		return false
	}
	return (r.Fault != FaultStreamCut && r.Fault != FaultStreamStall && r.Fault != FaultStreamTruncate) || stream
}

// ruleSet is the ordered list of fault rules.
type ruleSet struct {
	n     atomic.Int32 // len(rules), so requests skip the lock when there are none
	mu    sync.Mutex   // guards rules
	rules []Rule       // Count holds what is left; 0 is unlimited
}

func (rs *ruleSet) add(r Rule) {
	rs.mu.Lock()
	rs.rules = append(rs.rules, r)
	rs.n.Store(int32(len(rs.rules)))
	rs.mu.Unlock()
}

// take finds the first rule for this request and consumes one of its count.
func (rs *ruleSet) take(p provider, stream bool) (Rule, bool) {
	if rs.n.Load() == 0 {
		return Rule{}, false
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for i, r := range rs.rules {
		if !r.matches(p, stream) {
			continue
		}
		if r.Count > 0 {
			if r.Count == 1 {
				rs.rules = append(rs.rules[:i], rs.rules[i+1:]...)
				rs.n.Store(int32(len(rs.rules)))
			} else {
				rs.rules[i].Count--
			}
		}
		return r, true
	}
	return Rule{}, false
}

func (rs *ruleSet) list() []Rule {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]Rule{}, rs.rules...)
}

func (rs *ruleSet) clear() {
	rs.mu.Lock()
	rs.rules = nil
	rs.n.Store(0)
	rs.mu.Unlock()
}

// Faults that act on the connection itself hijack it from fasthttp. The
// hijack handlers run on goroutines fasthttp starts after the request handler
// returns; conns tracks them so that Close can unblock and wait for them.
type conns struct {
	mu     sync.Mutex // guards closed and open, and orders wg.Add before wg.Wait
	closed bool
	open   map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// enter registers a hijacked connection; false means the server is closing
// and the handler must return at once.
func (cs *conns) enter(c net.Conn) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		return false
	}
	if cs.open == nil {
		cs.open = make(map[net.Conn]struct{})
	}
	cs.open[c] = struct{}{}
	cs.wg.Add(1)
	return true
}

func (cs *conns) leave(c net.Conn) {
	cs.mu.Lock()
	delete(cs.open, c)
	cs.mu.Unlock()
	cs.wg.Done()
}

// closeAll closes every hijacked connection, refuses new ones, and waits for
// their handlers to return.
func (cs *conns) closeAll() {
	cs.mu.Lock()
	cs.closed = true
	for c := range cs.open {
		_ = c.Close()
	}
	cs.mu.Unlock()
	cs.wg.Wait()
}

// rawConn returns the connection under fasthttp's hijack wrapper, whose Close
// does nothing.
func rawConn(c net.Conn) net.Conn {
	if u, ok := c.(interface{ UnsafeConn() net.Conn }); ok {
		return u.UnsafeConn()
	}
	return c
}

// hijackReset closes the connection with SO_LINGER 0, so the client gets a
// RST instead of an answer.
func (s *Server) hijackReset(ctx *fasthttp.RequestCtx) {
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		raw := rawConn(c)
		if tc, ok := raw.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = raw.Close()
	})
}

// hijackHeld takes the connection from fasthttp for hold, which runs while
// the server tracks it, so that Close can end it; c is the connection as
// fasthttp hands it over, raw the socket under it.
func (s *Server) hijackHeld(ctx *fasthttp.RequestCtx, hold func(c, raw net.Conn)) {
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		raw := rawConn(c)
		if !s.hijacked.enter(raw) {
			return
		}
		defer s.hijacked.leave(raw)
		hold(c, raw)
	})
}

// hijackHang holds the connection without answering, reading (and dropping)
// whatever the client sends, until the client closes it or Close closes it.
func (s *Server) hijackHang(ctx *fasthttp.RequestCtx) {
	s.hijackHeld(ctx, func(c, raw net.Conn) {
		var buf [512]byte
		for {
			if _, err := c.Read(buf[:]); err != nil {
				return
			}
		}
	})
}

// hijackStreamCut writes the head of an answer and the first events of its
// stream as chunks, then closes the connection without the terminating
// zero-length chunk — or, with stall, holds it open sending nothing until the
// client closes it or Close does. head is the status line and headers,
// ending in CRLF CRLF.
func (s *Server) hijackStreamCut(ctx *fasthttp.RequestCtx, head []byte, events [][]byte, stall bool) {
	s.hijackHeld(ctx, func(c, raw net.Conn) {
		buf := append([]byte(nil), head...)
		for _, ev := range events {
			buf = fmt.Appendf(buf, "%x\r\n", len(ev))
			buf = append(buf, ev...)
			buf = append(buf, '\r', '\n')
		}
		_ = raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = raw.Write(buf)
		if stall {
			var rb [512]byte
			for {
				if _, err := c.Read(rb[:]); err != nil {
					break
				}
			}
		}
		// A plain close (FIN, not RST): the client reads every event sent,
		// then an unexpected EOF inside the chunked body.
		_ = raw.Close()
	})
}

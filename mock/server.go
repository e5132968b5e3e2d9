package mock

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Config sets up a Server. The zero value is a fast mock that accepts any
// non-empty key.
type Config struct {
	// Latency is added before every answer that reaches the model (successes,
	// streams, malformed bodies and cut streams; not validation errors or
	// error faults). Zero in-process; the mock-provider binary defaults to
	// 100ms.
	Latency time.Duration
	// Jitter adds a uniform random latency in [0, Jitter), drawn from a
	// generator seeded with Seed, so a run can be repeated.
	Jitter time.Duration
	Seed   int64
	// OpenAIKey and AnthropicKey, when non-empty, are the exact keys each API
	// requires; when empty, any non-empty key is accepted.
	OpenAIKey, AnthropicKey string
}

// Server is the mock provider. All its methods are safe for concurrent use.
type Server struct {
	cfg      Config
	srv      *fasthttp.Server
	rules    ruleSet
	counts   counters
	log      requestLog
	hijacked conns
	ids      idSource

	jitterMu sync.Mutex // guards jitter
	jitter   *rand.Rand

	closing   chan struct{} // closed by Close: unblocks latency and timeout waits
	closeOnce sync.Once

	mu      sync.Mutex // guards ln and serving
	ln      net.Listener
	serving chan struct{} // closed when Serve returns
}

// New returns a server; call Start to listen, or mount Handler yourself.
func New(cfg Config) *Server {
	s := &Server{
		cfg:     cfg,
		closing: make(chan struct{}),
		jitter:  rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(cfg.Seed)^0x9e3779b97f4a7c15)),
	}
	s.ids.init()
	s.srv = &fasthttp.Server{
		Handler:               s.Handler(),
		Name:                  "mock-provider",
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		// fasthttp formats the Date header on a process-wide goroutine that
		// never exits; without it, tests of packages that start the mock
		// in-process can check for leaks with goleak as they are.
		NoDefaultDate:      true,
		ReadBufferSize:     16 << 10,
		MaxRequestBodySize: 32 << 20,
		// No WriteTimeout: it would cover a whole streamed body.
		ReadTimeout:     30 * time.Second,
		IdleTimeout:     90 * time.Second,
		CloseOnShutdown: true,
		// fasthttp's worker-pool cleaner notices a stop only after sleeping
		// this long; keep it short so that the goroutine is gone soon after
		// Close (tests that use goleak would otherwise wait 10 s).
		MaxIdleWorkerDuration: 100 * time.Millisecond,
		Logger:                quietLogger{},
	}
	return s
}

// Handler is the mock as a fasthttp handler, for mounting in a server of
// your own. Close still unblocks its hang and timeout faults.
func (s *Server) Handler() fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		defer func() {
			if v := recover(); v != nil {
				log.Printf("mock: panic serving %s %s: %v", ctx.Method(), ctx.Path(), v)
				ctx.ResetBody()
				ctx.SetStatusCode(fasthttp.StatusInternalServerError)
			}
		}()
		switch string(ctx.Path()) {
		case "/v1/chat/completions":
			s.serveOpenAI(ctx)
		case "/v1/messages":
			s.serveAnthropic(ctx)
		default:
			s.serveControl(ctx)
		}
	}
}

// Start listens on addr (for example "127.0.0.1:0") and serves in the
// background. It returns the address actually bound, as host:port.
func (s *Server) Start(addr string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return "", errors.New("mock: already started")
	}
	select {
	case <-s.closing:
		return "", errors.New("mock: closed")
	default:
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	s.ln = ln
	s.serving = make(chan struct{})
	go func() {
		defer close(s.serving)
		_ = s.srv.Serve(ln)
	}()
	return ln.Addr().String(), nil
}

// Close stops serving, unblocks the hang and timeout faults in flight, and
// waits for every goroutine the server started.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closing)
		s.hijacked.closeAll()
		s.mu.Lock()
		ln, serving := s.ln, s.serving
		s.mu.Unlock()
		if ln == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = s.srv.ShutdownWithContext(ctx)
		// Serve may not have registered the listener yet (Close right after
		// Start), in which case Shutdown found nothing to close: close it
		// here so Serve returns.
		_ = ln.Close()
		<-serving
	})
	return err
}

// AddFault appends a fault rule; its errors wrap ErrInvalidRule.
func (s *Server) AddFault(r Rule) error {
	r, err := r.normalize()
	if err != nil {
		return err
	}
	s.rules.add(r)
	return nil
}

// Faults lists the rules left, in order, with their remaining counts.
func (s *Server) Faults() []Rule { return s.rules.list() }

// ClearFaults removes every rule.
func (s *Server) ClearFaults() { s.rules.clear() }

// Reset clears the rules, the counters and the log.
func (s *Server) Reset() {
	s.rules.clear()
	s.counts.reset()
	s.log.reset()
}

// Stats is a snapshot of the counters.
func (s *Server) Stats() Stats { return s.counts.snapshot() }

// Log returns the last LogSize requests, oldest first.
func (s *Server) Log() []LogEntry { return s.log.entries() }

// takeFault takes the fault rule that applies to this call, if any, and
// records the call with the outcome the rule gives it.
func (s *Server) takeFault(ctx *fasthttp.RequestCtx, p provider, model string, stream bool) (Rule, bool) {
	rule, faulted := s.rules.take(p, stream)
	o := outcomeOK
	if faulted {
		o = faultOutcomes[rule.Fault]
	}
	s.record(ctx, p, o, model, stream)
	return rule, faulted
}

// record counts a request once its outcome is known, and logs it.
func (s *Server) record(ctx *fasthttp.RequestCtx, p provider, o outcome, model string, stream bool) {
	s.counts.add(p, o)
	s.log.add(p, o, stream, ctx.Request.Header.Peek("X-Request-ID"), model, ctx.Request.Body())
}

// wait sleeps for d, and reports false if the server closed meanwhile.
func (s *Server) wait(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.closing:
		return false
	}
}

// latency is the configured latency plus its jitter.
func (s *Server) latency() time.Duration {
	d := s.cfg.Latency
	if s.cfg.Jitter > 0 {
		s.jitterMu.Lock()
		d += time.Duration(s.jitter.Int64N(int64(s.cfg.Jitter)))
		s.jitterMu.Unlock()
	}
	return d
}

// serveControl answers the /mock/ control API.
func (s *Server) serveControl(ctx *fasthttp.RequestCtx) {
	method := string(ctx.Method())
	switch string(ctx.Path()) {
	case "/mock/faults":
		switch method {
		case fasthttp.MethodPost:
			var r Rule
			dec := json.NewDecoder(bytes.NewReader(ctx.Request.Body()))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&r); err != nil {
				controlError(ctx, fasthttp.StatusBadRequest, "invalid rule JSON: "+err.Error())
				return
			}
			if dec.More() {
				controlError(ctx, fasthttp.StatusBadRequest, "invalid rule JSON: trailing data after the rule")
				return
			}
			r, err := r.normalize()
			if err != nil {
				controlError(ctx, fasthttp.StatusBadRequest, err.Error())
				return
			}
			s.rules.add(r)
			controlJSON(ctx, fasthttp.StatusCreated, r)
		case fasthttp.MethodGet:
			controlJSON(ctx, fasthttp.StatusOK, s.rules.list())
		case fasthttp.MethodDelete:
			s.rules.clear()
			controlJSON(ctx, fasthttp.StatusOK, map[string]bool{"cleared": true})
		default:
			methodNotAllowed(ctx, "GET, POST, DELETE")
		}
	case "/mock/stats":
		if method != fasthttp.MethodGet {
			methodNotAllowed(ctx, "GET")
			return
		}
		controlJSON(ctx, fasthttp.StatusOK, s.Stats())
	case "/mock/log":
		if method != fasthttp.MethodGet {
			methodNotAllowed(ctx, "GET")
			return
		}
		controlJSON(ctx, fasthttp.StatusOK, s.Log())
	case "/mock/reset":
		if method != fasthttp.MethodPost {
			methodNotAllowed(ctx, "POST")
			return
		}
		s.Reset()
		controlJSON(ctx, fasthttp.StatusOK, map[string]bool{"reset": true})
	default:
		controlError(ctx, fasthttp.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", method, ctx.Path()))
	}
}

func controlJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		controlError(ctx, fasthttp.StatusInternalServerError, err.Error())
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '\n'))
}

func controlError(ctx *fasthttp.RequestCtx, status int, msg string) {
	b, _ := json.Marshal(map[string]string{"error": msg})
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '\n'))
}

func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set("Allow", allow)
	controlError(ctx, fasthttp.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s (allowed: %s)", ctx.Method(), ctx.Path(), allow))
}

// idSource mints unique IDs cheaply: a random prefix per server and a counter.
type idSource struct {
	prefix string
	n      atomic.Uint64
}

func (g *idSource) init() {
	var b [6]byte
	_, _ = crand.Read(b[:])
	g.prefix = hex.EncodeToString(b[:])
}

const hexDigits = "0123456789abcdef"

// next returns a fresh 28-character token such as "3f9a2b1c0d4e0000000000000001".
func (g *idSource) next() string {
	var b [28]byte
	copy(b[:], g.prefix)
	n := g.n.Add(1)
	for i := len(b) - 1; i >= len(g.prefix); i-- {
		b[i] = hexDigits[n&0xf]
		n >>= 4
	}
	return string(b[:])
}

// quietLogger drops fasthttp's own log lines (connection resets that the
// faults cause on purpose would otherwise flood the test output).
type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

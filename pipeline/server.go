package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llm-gateway/gateway/fsm"
	"github.com/llm-gateway/gateway/providers"
)

// Config is everything New needs.
type Config struct {
	Settings  Settings
	Providers providers.Settings
	// Clock is the time source of the policy and the breakers; nil means the
	// system clock.
	Clock providers.Clock
	// Log receives the journal; nil means io.Discard.
	Log io.Writer
	// WrapProvider, when set, wraps every provider New builds, before the
	// engine sees it. It is the seam for what the mock cannot do, such as a
	// provider that panics or streams slowly in a test; production leaves it
	// nil.
	WrapProvider func(providers.Provider) providers.Provider
}

// Server is the orchestrator: the fasthttp ingress in front of the engine.
type Server struct {
	settings Settings
	routes   providers.Routes
	engine   *Engine
	decoder  *Decoder
	journal  *Journal
	clock    providers.Clock
	breakers map[string]*providers.Breaker

	// The hook and clock of every request machine, bound once: a method
	// value made per request is an allocation each.
	hook fsm.Hook
	now  func() time.Time

	names  []string          // provider names, sorted
	models []byte            // the /v1/models answer, built once
	model1 map[string][]byte // each /v1/models/{model} answer
	http   *fasthttp.Server

	metrics        *Metrics
	metricsHandler fasthttp.RequestHandler
	apiKeys        keyring // auth.keys
	adminKeys      keyring // auth.admin_keys

	watches watchList   // client watches waiting for their delay (disconnect.go)
	streams liveStreams // the streams flowing, for a drain that runs out (stream.go)

	limiter  atomic.Pointer[connLimiter] // set by Serve
	draining atomic.Bool                 // set by Shutdown: /readyz answers 503
}

// New builds the orchestrator from validated settings.
func New(c Config) (*Server, error) {
	c.Settings.ApplyDefaults()
	if errs := c.Settings.Validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if c.Clock == nil {
		c.Clock = providers.SystemClock
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	s := &Server{
		settings: c.Settings,
		routes:   c.Providers.Routes,
		decoder:  NewDecoder(c.Settings.Server.MaxMessages),
		clock:    c.Clock,
		breakers: make(map[string]*providers.Breaker),
	}
	s.hook, s.now = s.observe, c.Clock.Now
	s.journal = NewJournal(c.Log, c.Settings.Log.Format, c.Clock.Now)
	provs := make(map[string]providers.Provider)
	for name, ps := range c.Providers.Providers {
		p, err := providers.New(name, ps)
		if err != nil {
			s.journal.Close()
			return nil, fmt.Errorf("providers.%s: %w", name, err)
		}
		if c.WrapProvider != nil {
			p = c.WrapProvider(p)
		}
		provs[name] = p
		s.breakers[name] = providers.NewBreaker(name, c.Providers.Breaker, c.Clock, s.observe)
		s.names = append(s.names, name)
	}
	sort.Strings(s.names)
	for model, targets := range s.routes {
		for i, t := range targets {
			if provs[t.Provider] == nil {
				s.journal.Close()
				return nil, fmt.Errorf("routes.%s[%d].provider: %q is not a configured provider", model, i, t.Provider)
			}
		}
	}
	s.metrics = NewMetrics(s.names, s.breakers, s.openConns)
	s.metricsHandler = s.metrics.Handler()
	s.apiKeys, s.adminKeys = newKeyring(c.Settings.Auth.Keys), newKeyring(c.Settings.Auth.AdminKeys)
	s.engine = NewEngine(EngineConfig{
		Policy:    c.Settings.Policy,
		Routes:    s.routes,
		Providers: provs,
		Breakers:  s.breakers,
		Clock:     c.Clock,
		Journal:   s.journal,
		Metrics:   s.metrics,
	})
	s.models, s.model1 = modelList(s.routes)
	s.http = &fasthttp.Server{
		Handler:               s.handle,
		ErrorHandler:          s.transportError,
		Name:                  "llm-gateway",
		NoDefaultServerHeader: true,
		ReadTimeout:           c.Settings.Server.ReadTimeout,
		WriteTimeout:          c.Settings.Server.WriteTimeout,
		IdleTimeout:           c.Settings.Server.IdleTimeout,
		ReadBufferSize:        c.Settings.Server.MaxHeaderBytes,
		MaxRequestBodySize:    MaxBodyCeiling,
		// The connection limits are the limiter's (limits.go), which
		// answers in the OpenAI shape; fasthttp's own must never be the
		// one that refuses. Its worker count only trails the limiter's
		// count by the moment between a Close and the worker's release.
		Concurrency:     2 * c.Settings.Server.MaxConns,
		CloseOnShutdown: true,
		// fasthttp's own complaints (a connection that failed, a limit
		// hit) go to the journal as lines of its format, and never quote
		// the request's bytes, which may hold a key.
		Logger:                journalLogger{s.journal},
		SecureErrorLogMessage: true,
		// A multipart body is not parsed before the handler, which
		// answers any content type but JSON with a 415.
		DisablePreParseMultipartForm: true,
	}
	return s, nil
}

// journalLogger writes fasthttp's log lines into the journal. fasthttp
// quotes parts of a request it could not parse (an invalid header value, even
// with SecureErrorLogMessage), and those may hold a key: every quoted part
// but a network address is redacted.
type journalLogger struct{ j *Journal }

var (
	quoted  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	address = regexp.MustCompile(`^"[0-9A-Fa-f.:\[\]]+"$`)
)

func (l journalLogger) Printf(format string, args ...any) {
	msg := quoted.ReplaceAllStringFunc(fmt.Sprintf(format, args...), func(q string) string {
		if address.MatchString(q) {
			return q
		}
		return `"<redacted>"`
	})
	l.j.Message(levelWarn, "http_server", "message", truncate(msg, 300))
}

func (s *Server) openConns() int {
	if l := s.limiter.Load(); l != nil {
		return l.Open()
	}
	return 0
}

// observe is the one hook of every machine: the journal (and what hangs off
// it) sees each transition once.
func (s *Server) observe(t fsm.Transition) {
	s.journal.Transition(t)
	s.metrics.transition(t)
}

// Metrics returns the server's instrumentation.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Journal returns the server's journal.
func (s *Server) Journal() *Journal { return s.journal }

// Breakers returns each provider's breaker, by name.
func (s *Server) Breakers() map[string]*providers.Breaker { return s.breakers }

// Serve serves on ln until Shutdown, within the connection limits of the
// settings. It logs the start line first, so replay knows that breakers begin
// closed again.
func (s *Server) Serve(ln net.Listener) error {
	l := newConnLimiter(ln, s.settings.Server.MaxConns, s.settings.Server.MaxConnsPerIP, s.metrics.connRejected)
	l.onRefuse = s.metrics.transportError
	s.limiter.Store(l)
	if s.draining.Load() {
		// Shutdown came first: it will not find this listener in fasthttp.
		return l.Close()
	}
	s.journal.Start("listen", ln.Addr().String(), "providers", fmt.Sprint(s.names))
	return s.http.Serve(l)
}

// Shutdown drains the server: it stops accepting (the listener is closed, so
// new connections are refused), closes idle keep-alive connections, answers
// the requests in flight with Connection: close and waits for them, streams
// included, up to ctx; then it flushes and closes the journal. A request
// still running when ctx ends is abandoned; the error then says so.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	kv := []string{"in_flight", strconv.FormatInt(s.metrics.inFlightNow(), 10), "streams", strconv.FormatInt(s.metrics.streamsNow(), 10)}
	if dl, ok := ctx.Deadline(); ok {
		kv = append(kv, "drain_timeout", time.Until(dl).Round(time.Millisecond).String())
	}
	s.journal.Message(levelInfo, "draining", kv...)
	err := s.http.ShutdownWithContext(ctx)
	if l := s.limiter.Load(); l != nil {
		// Serve may have stored its listener without handing it to fasthttp
		// yet; closed here, its first Accept fails and Serve returns.
		_ = l.Close()
	}
	if err != nil {
		// The drain ran out with streams still flowing: each is ended
		// with an error event and a give_up, so that no client takes a
		// cut stream for a whole answer and the journal replays.
		s.streams.abort(streamAbortWait)
	}
	// Nothing will call the providers again: close their idle keep-alive
	// connections now rather than at their idle timeout.
	for _, p := range s.engine.providers {
		if c, ok := p.(io.Closer); ok {
			_ = c.Close()
		}
	}
	if err != nil {
		s.journal.Message(levelWarn, "stopped", "drained", "false", "in_flight", strconv.FormatInt(s.metrics.inFlightNow(), 10), "error", err.Error())
		err = fmt.Errorf("drain: %w (%d request(s) still in flight)", err, s.metrics.inFlightNow())
	} else {
		s.journal.Message(levelInfo, "stopped", "drained", "true")
	}
	s.journal.Close()
	return err
}

// Handler returns the server's request handler, for in-process use.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handle }

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	defer func() {
		if v := recover(); v != nil {
			s.panicked(ctx, "", nil, v, time.Time{})
		}
	}()
	if !s.authorize(ctx) {
		return
	}
	switch string(ctx.Path()) {
	case "/v1/chat/completions":
		if !ctx.IsPost() {
			methodNotAllowed(ctx, "POST")
			return
		}
		s.chat(ctx)
	case "/v1/models":
		if !ctx.IsGet() && !ctx.IsHead() {
			methodNotAllowed(ctx, "GET, HEAD")
			return
		}
		ctx.SetContentType("application/json")
		ctx.SetBody(s.models)
	case "/healthz":
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"status":"ok"}`)
	case "/readyz":
		s.ready(ctx)
	case "/admin/breakers":
		s.breakerStatus(ctx)
	case "/metrics":
		if !ctx.IsGet() && !ctx.IsHead() {
			methodNotAllowed(ctx, "GET, HEAD")
			return
		}
		s.metricsHandler(ctx)
	default:
		if name, ok := strings.CutPrefix(string(ctx.Path()), "/v1/models/"); ok {
			s.model(ctx, name)
			return
		}
		writeError(ctx, requestID(ctx), &apiError{Status: 404, Type: typeInvalidRequest, Code: "unknown_url",
			Message: fmt.Sprintf("unknown path %s; the gateway serves POST /v1/chat/completions", truncate(string(ctx.Path()), 200))}, 0, 0)
	}
}

func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set("Allow", allow)
	writeError(ctx, requestID(ctx), &apiError{Status: 405, Type: typeInvalidRequest, Code: "method_not_allowed",
		Message: fmt.Sprintf("method %s is not allowed on %s; use %s", ctx.Method(), ctx.Path(), allow)}, 0, 0)
}

// chat serves POST /v1/chat/completions: one request machine from received
// to a terminal state.
func (s *Server) chat(ctx *fasthttp.RequestCtx) {
	start := s.clock.Now()
	id := requestID(ctx)
	m := fsm.Request.New(id, s.hook, s.now)
	s.metrics.requestBegan()
	streamed := false // from then on the stream's writer owns the end of the request
	var end time.Time // when the answer was known, if it was
	var req *providers.ChatRequest
	defer func() {
		v := recover()
		if v != nil {
			s.panicked(ctx, id, m, v, start)
		}
		if !streamed {
			if end.IsZero() {
				end = s.clock.Now()
			}
			s.metrics.requestEnded(m.State() == fsm.Succeeded, false, end.Sub(start))
			m.Release() // its looplab/fsm instance serves the next request
			if req != nil && v == nil {
				// The answer is written and the calls are over: the
				// request serves the next one. After a panic something
				// may still hold it.
				s.decoder.release(req)
			}
		}
	}()

	var targets []providers.Target
	var ae *apiError
	body := ctx.PostBody()
	switch enc := ctx.Request.Header.ContentEncoding(); {
	case len(enc) > 0 && !bytes.EqualFold(enc, []byte("identity")):
		// The body would be read as JSON while it is gzip or another
		// coding (RFC 9110 §8.4.1: 415 for a coding the server does not
		// accept).
		ae = &apiError{Status: 415, Type: typeInvalidRequest, Code: "unsupported_content_encoding",
			Message: fmt.Sprintf("Content-Encoding %q is not accepted; send the JSON body uncompressed", truncate(string(enc), 100)),
			Reason:  "unsupported_media_type"}
	case len(body) > s.settings.Server.MaxBodyBytes:
		ae = tooLarge(s.settings.Server.MaxBodyBytes)
	default:
		req, ae = s.decoder.Decode(ctx.Request.Header.ContentType(), body)
	}
	model := ""
	if req != nil {
		model = req.Model
	}
	decoded := s.clock.Now()
	s.journal.Received(id, model, req != nil && req.Stream, decoded)
	if ae == nil {
		if n := contentChars(req); n > s.settings.Server.MaxContentChars {
			ae = contentTooLong(n, s.settings.Server.MaxContentChars)
		}
	}
	if ae == nil {
		var ok bool
		if targets, ok = s.routes.Lookup(req.Model); !ok {
			ae = &apiError{Status: 404, Type: typeInvalidRequest, Code: "model_not_found", Param: "model",
				Message: fmt.Sprintf("the model %q does not exist on this gateway; GET /v1/models lists the models it serves", truncate(req.Model, 100)),
				Reason:  "model_not_found"}
		}
	}
	if ae != nil {
		if _, err := m.FireAt(ctx, fsm.EventReject, fsm.Detail{Status: ae.Status, Reason: ae.Reason}, decoded); err != nil {
			panic(err)
		}
		end = decoded // the answer was known then
		writeError(ctx, id, ae, 0, end.Sub(start))
		return
	}
	if _, err := m.FireAt(ctx, fsm.EventValidate, fsm.Detail{}, decoded); err != nil {
		panic(err)
	}

	rctx := newCallCtx()
	res := s.run(ctx.Conn(), rctx, m, req, targets, start)
	if res.Stream != nil {
		// The stream's writer runs after this handler returns and owns
		// cancel from here on. A stream may flow for minutes: exempt it
		// from server.write_timeout here, in the handler, since fasthttp
		// arms that deadline after the handler returns (a deadline cleared
		// by the writer's goroutine could be armed again after it).
		_ = ctx.SetWriteDeadline(time.Time{})
		s.writeStream(ctx, id, res, req, rctx, start)
		streamed = true
		return
	}

	end = res.End
	if end.IsZero() {
		end = s.clock.Now()
	}
	latency := end.Sub(start)
	if res.Err != nil {
		writeError(ctx, id, res.Err, res.Attempts, latency)
		return
	}
	writeCompletion(ctx, id, res, latency)
	res.Response.Release() // its bytes are in the client's answer now
}

// run drives the engine while watching for the client to leave. The watch
// ends on every path, a panic included, before the connection is used again.
func (s *Server) run(conn net.Conn, rctx *callCtx, m *fsm.Machine, req *providers.ChatRequest, targets []providers.Target, start time.Time) (res Result) {
	watch := rctx.watchClient(conn, &s.watches)
	defer func() {
		watch.stop()
		if res.Stream == nil {
			rctx.cancel()
		}
	}()
	return s.engine.Run(rctx, m, req, targets, start)
}

func tooLarge(limit int) *apiError {
	return &apiError{Status: 413, Type: typeInvalidRequest, Code: "request_too_large",
		Message: fmt.Sprintf("the request body is larger than %d bytes", limit), Reason: "too_large"}
}

// transportError answers what fasthttp could not hand to the handler.
func (s *Server) transportError(ctx *fasthttp.RequestCtx, err error) {
	var ae *apiError
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		ae = tooLarge(s.settings.Server.MaxBodyBytes)
	case errors.As(err, new(*fasthttp.ErrSmallBuffer)):
		ae = &apiError{Status: 431, Type: typeInvalidRequest, Code: "headers_too_large", Message: "the request headers are too large"}
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			ae = &apiError{Status: 408, Type: typeInvalidRequest, Code: "request_timeout", Message: "the request was not received in time"}
		} else {
			ae = invalid("", "the HTTP request is malformed")
		}
	}
	s.metrics.transportError(ae.Status)
	ctx.SetConnectionClose()
	// The header may not have been read (431, a malformed request line);
	// requestID then mints one, so every answer still carries an ID.
	writeError(ctx, requestID(ctx), ae, 0, 0)
}

// requestID keeps a valid incoming X-Request-ID or mints one.
func requestID(ctx *fasthttp.RequestCtx) string {
	if in := ctx.Request.Header.Peek("X-Request-ID"); validRequestID(in) {
		return string(in)
	}
	return newRequestID()
}

func validRequestID(b []byte) bool {
	if len(b) == 0 || len(b) > 128 {
		return false
	}
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

const idAlphabet = "0123456789abcdefghijklmnopqrstuvwxyz"

// newRequestID returns "req_" and 24 random base-36 characters (about 124
// bits), from the runtime's per-thread generator: no lock, no syscall.
func newRequestID() string {
	var b [28]byte
	copy(b[:], "req_")
	// Twelve base-36 digits from each 64-bit draw (36^12 < 2^64); draws
	// at or above idLimit are rejected so that every digit is uniform.
	for i := 4; i < len(b); {
		v := rand.Uint64()
		if v >= idLimit {
			continue
		}
		for n := 0; n < 12 && i < len(b); n++ {
			b[i] = idAlphabet[v%36]
			v /= 36
			i++
		}
	}
	return string(b[:])
}

// idLimit is the largest multiple of 36^12 that fits in a uint64.
const idLimit = (1<<64 - 1) / 4738381338321616896 * 4738381338321616896

// modelObject is one model as OpenAI's model endpoints describe it.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// modelList renders GET /v1/models, and GET /v1/models/{model} for each
// public model name.
func modelList(r providers.Routes) ([]byte, map[string][]byte) {
	list := struct {
		Object string        `json:"object"`
		Data   []modelObject `json:"data"`
	}{Object: "list", Data: []modelObject{}}
	each := map[string][]byte{}
	for _, name := range r.Models() {
		m := modelObject{ID: name, Object: "model", OwnedBy: "llm-gateway"}
		list.Data = append(list.Data, m)
		each[name], _ = json.Marshal(m)
	}
	b, _ := json.Marshal(list)
	return b, each
}

// model serves GET /v1/models/{model} (the SDKs' models.retrieve).
func (s *Server) model(ctx *fasthttp.RequestCtx, name string) {
	if !ctx.IsGet() && !ctx.IsHead() {
		methodNotAllowed(ctx, "GET, HEAD")
		return
	}
	b, ok := s.model1[name]
	if !ok {
		writeError(ctx, requestID(ctx), &apiError{Status: 404, Type: typeInvalidRequest, Code: "model_not_found", Param: "model",
			Message: fmt.Sprintf("the model %q does not exist; GET /v1/models lists the models of this gateway", truncate(name, 200))}, 0, 0)
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

func (s *Server) ready(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("application/json")
	if s.draining.Load() {
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetBodyString(`{"status":"draining","reason":"the gateway is shutting down"}`)
		return
	}
	// An open breaker whose probe is due admits the next call as its probe,
	// so it can serve: without this, a gateway taken out of rotation when
	// every breaker opened would get no request to probe with.
	now := s.clock.Now()
	for _, name := range s.names {
		if b := s.breakers[name].Snapshot(); b.State != fsm.Open || !now.Before(b.NextProbeAt) {
			ctx.SetBodyString(`{"status":"ready"}`)
			return
		}
	}
	ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
	ctx.SetBodyString(`{"status":"unavailable","reason":"every provider's circuit breaker is open"}`)
}

func (s *Server) breakerStatus(ctx *fasthttp.RequestCtx) {
	out := make([]providers.BreakerStatus, 0, len(s.names))
	for _, name := range s.names {
		out = append(out, s.breakers[name].Snapshot())
	}
	b, err := json.Marshal(map[string]any{"breakers": out, "time": s.clock.Now().UTC().Format(time.RFC3339Nano)})
	if err != nil {
		ctx.Error(err.Error(), 500)
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

package providers

// The connection pool of one provider and the life of one attempt over it.
//
// fasthttp has no context support, and its request timeouts (DoTimeout,
// ReadTimeout) also cut a streamed body (DESIGN §8). So each adapter's
// HostClient runs a small transport of ours (attemptTransport) that binds the
// connection it uses to the attempt. The attempt's deadline is set on that
// connection while the request is written and the answer read; a cancelled
// context, or a Stream's Close, aborts the attempt by closing the bound
// connection, which ends a blocked read at once. No goroutine is started per
// call, nothing is retried (the transport never asks for a retry, RetryIf and
// RetryIfErr stay nil and MaxIdemponentCallAttempts is 1), and a connection
// goes back to the pool only when its answer was read completely and it was
// not aborted.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

const (
	// maxResponseBody bounds a non-streamed answer; a larger one is refused
	// as malformed rather than buffered.
	maxResponseBody = 32 << 20
	// maxErrorBody is how much of an error answer is read for its message.
	maxErrorBody = 64 << 10
	// defaultDialTimeout bounds connecting when the call sets no timeout.
	defaultDialTimeout = 10 * time.Second
	// drainTimeout is how long Close waits for the end of a finished
	// stream's body (the chunk terminator) so its connection can be reused.
	drainTimeout = 100 * time.Millisecond
)

// New builds the adapter of s.Kind ("openai" or "anthropic") under name.
func New(name string, s ProviderSettings) (Provider, error) {
	switch s.Kind {
	case KindOpenAI:
		return NewOpenAI(name, s)
	case KindAnthropic:
		return NewAnthropic(name, s)
	}
	return nil, fmt.Errorf("provider %s: unknown kind %q (want %q or %q)", name, s.Kind, KindOpenAI, KindAnthropic)
}

// upstream is one provider's endpoint and connection pool. Safe for
// concurrent use.
type upstream struct {
	provider string
	hc       *fasthttp.HostClient
	url      string // the absolute endpoint URL
	key      string // the API key, only to redact it from errors

	// The heads every call's request starts from, built once by setHeads:
	// [0] for a plain call, [1] for a stream, and the endpoint's parsed URL.
	// Copying them costs less than setting, checking and normalising each
	// header and parsing the URL again for every call. Only read after
	// setHeads.
	heads [2]fasthttp.RequestHeader
	uri   fasthttp.URI
}

func newUpstream(provider string, s ProviderSettings, path string) (*upstream, error) {
	if s.BaseURL == "" {
		return nil, fmt.Errorf("provider %s: base_url is required", provider)
	}
	u, err := url.Parse(s.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("provider %s: base_url: %w", provider, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("provider %s: base_url %q must be an http or https URL with a host", provider, s.BaseURL)
	}
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	maxConns := s.MaxConns
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	connWait := s.MaxConnWait
	if connWait <= 0 {
		connWait = DefaultMaxConnWait
	}
	idle := s.IdleConnTimeout
	if idle <= 0 {
		idle = DefaultIdleConnTimeout
	}
	hc := &fasthttp.HostClient{
		Addr:                      addr,
		IsTLS:                     u.Scheme == "https",
		Name:                      "llm-gateway",
		DialTimeout:               dialTCP,
		Transport:                 attemptTransport{},
		MaxConns:                  maxConns,
		MaxConnWaitTimeout:        connWait,
		MaxIdleConnDuration:       idle,
		MaxIdemponentCallAttempts: 1,
		MaxResponseBodySize:       maxResponseBody,
		// RetryIf, RetryIfErr, ReadTimeout and WriteTimeout stay unset: we
		// retry ourselves, visibly, and deadlines are per attempt.
	}
	return &upstream{
		provider: provider,
		hc:       hc,
		url:      u.Scheme + "://" + u.Host + strings.TrimSuffix(u.Path, "/") + path,
		key:      s.APIKey,
	}, nil
}

// dialTCP connects without fasthttp's default dialer, whose DNS cache runs a
// goroutine for the life of the process.
func dialTCP(addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	return d.Dial("tcp", addr)
}

// close closes the idle connections. Calls in flight finish normally.
func (u *upstream) close() { u.hc.CloseIdleConnections() }

// setHeads builds the request heads of every call: the parts common to both
// APIs and the adapter's own headers, given as key, value pairs (its
// credentials, its API version).
func (u *upstream) setHeads(kv ...string) {
	var r fasthttp.Request
	for i, accept := range [2]string{"application/json", "text/event-stream"} {
		r.Reset()
		r.Header.SetMethod(fasthttp.MethodPost)
		r.SetRequestURI(u.url)
		r.Header.SetContentType("application/json")
		r.Header.Set(fasthttp.HeaderAccept, accept)
		r.Header.SetUserAgent(u.hc.Name)
		for j := 0; j+1 < len(kv); j += 2 {
			r.Header.Set(kv[j], kv[j+1])
		}
		r.Header.CopyTo(&u.heads[i])
		if i == 0 {
			r.URI().CopyTo(&u.uri)
		}
	}
}

// prepare fills an upstream request from its head. body must stay unchanged
// until the call returns.
func (u *upstream) prepare(req *fasthttp.Request, call Call, body []byte, stream bool) {
	u.heads[b2i(stream)].CopyTo(&req.Header)
	req.SetURI(&u.uri)
	if call.RequestID != "" {
		req.Header.Set("X-Request-ID", call.RequestID)
	}
	req.SetBodyRaw(body)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// attemptKey is the Request user value under which an attempt travels to
// the transport.
type attemptKey struct{}

// attempt is one call's hold on its connection: the transport binds the
// connection, abort closes it. Safe for concurrent use.
type attempt struct {
	deadline time.Time // for the whole call, or (stream) until the first chunk; zero: none
	stream   bool

	mu      sync.Mutex // guards conn and aborted
	conn    net.Conn   // bound while the transport or a streamed body uses it
	aborted Class      // why the attempt was cut by us; "" while it was not

	// release gives back a streamed body's connection: to the pool when reuse
	// is true, closed otherwise. Set by the transport, called once by Close.
	release func(reuse bool)
}

func newAttempt(call Call, stream bool, now time.Time) *attempt {
	a := &attempt{stream: stream}
	if call.Timeout > 0 {
		a.deadline = now.Add(call.Timeout)
	}
	return a
}

// abort cuts the attempt for reason c (the first reason wins): the bound
// connection is closed, so a read in flight returns at once.
func (a *attempt) abort(c Class) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.aborted == "" {
		a.aborted = c
	}
	if a.conn != nil {
		_ = a.conn.Close()
	}
}

// reason reports why the attempt was aborted, or "".
func (a *attempt) reason() Class {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.aborted
}

// bind attaches the connection; false when the attempt is already aborted.
func (a *attempt) bind(c net.Conn) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.aborted != "" {
		return false
	}
	a.conn = c
	return true
}

// unbind detaches the connection so a later abort cannot close it once it is
// back in the pool; it reports whether the attempt was aborted.
func (a *attempt) unbind() (aborted bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conn = nil
	return a.aborted != ""
}

// setReadDeadline moves the read deadline of the bound connection.
func (a *attempt) setReadDeadline(t time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn == nil {
		return net.ErrClosed
	}
	return a.conn.SetReadDeadline(t)
}

func (a *attempt) dialTimeout() time.Duration {
	if a.deadline.IsZero() {
		return defaultDialTimeout
	}
	return time.Until(a.deadline)
}

var (
	errNoAttempt = errors.New("providers: request sent without an attempt")
	errAborted   = errors.New("providers: attempt aborted")
)

// attemptTransport is the fasthttp RoundTripper of our HostClients, the
// default transport minus retries and timeouts plus the attempt binding.
type attemptTransport struct{}

func (attemptTransport) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (retry bool, err error) {
	a, ok := req.UserValue(attemptKey{}).(*attempt)
	if !ok {
		return false, errNoAttempt
	}
	dialTimeout := a.dialTimeout()
	if dialTimeout <= 0 {
		return false, fasthttp.ErrTimeout
	}
	cc, err := hc.AcquireConn(dialTimeout, false)
	if err != nil {
		return false, err
	}
	conn := cc.Conn()
	if !a.bind(conn) {
		hc.CloseConn(cc)
		return false, errAborted
	}
	fail := func(err error) (bool, error) {
		a.unbind()
		hc.CloseConn(cc)
		return false, err
	}
	if err := conn.SetDeadline(a.deadline); err != nil {
		return fail(err)
	}
	resp.ParseNetConn(conn)

	bw := hc.AcquireWriter(conn)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if err != nil {
		return fail(err)
	}

	br := hc.AcquireReader(conn)
	resp.StreamBody = a.stream
	if err := resp.ReadLimitBody(br, hc.MaxResponseBodySize); err != nil {
		hc.ReleaseReader(br)
		return fail(err)
	}
	connClose := resp.ConnectionClose() || req.ConnectionClose()
	if a.stream && resp.BodyStream() != nil {
		// The body streams from br; the stream's Close gives both back.
		a.release = func(reuse bool) {
			hc.ReleaseReader(br)
			if aborted := a.unbind(); reuse && !aborted && !connClose {
				hc.ReleaseConn(cc)
			} else {
				hc.CloseConn(cc)
			}
		}
		return false, nil
	}
	hc.ReleaseReader(br)
	if aborted := a.unbind(); aborted || connClose {
		hc.CloseConn(cc)
	} else {
		hc.ReleaseConn(cc)
	}
	return false, nil
}

// send makes one attempt: it writes req and reads the answer into resp, all
// of it, or for a stream its headers (the body then streams from
// resp.BodyStream and the connection stays bound to a). A cancelled ctx
// aborts the attempt at once. The returned stop detaches ctx; a stream calls
// it at Close, everyone else at once (send does so on error).
func (u *upstream) send(ctx context.Context, a *attempt, req *fasthttp.Request, resp *fasthttp.Response) (stop func() bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, u.fail(ClassCanceled, 0, "the call was canceled before it started", err)
	}
	req.SetUserValue(attemptKey{}, a)
	stop = afterFunc(ctx, func() { a.abort(ClassCanceled) })
	err = u.hc.Do(req, resp)
	if err != nil {
		stop()
		reason := a.reason()
		if reason == "" && ctx.Err() != nil {
			reason = ClassCanceled
		}
		return nil, u.transportError(err, reason)
	}
	return stop, nil
}

// noStop is the stop of a context that is never done.
func noStop() bool { return true }

// afterFuncer is a context that runs functions at its end itself, as the
// pipeline's request context does (package context knows the same
// interface).
type afterFuncer interface {
	AfterFunc(f func()) (stop func() bool)
}

// afterFunc is context.AfterFunc without its cost where it can be saved: a
// context that is never done gets noStop, and one that is an afterFuncer
// keeps f itself instead of through a context made for it.
func afterFunc(ctx context.Context, f func()) (stop func() bool) {
	if af, ok := ctx.(afterFuncer); ok {
		return af.AfterFunc(f)
	}
	if ctx.Done() == nil {
		return noStop
	}
	return context.AfterFunc(ctx, f)
}

// complete makes one non-streamed call. A 2xx body goes to parse, which must
// copy what it keeps (the body is pooled); a failure to parse is
// ClassMalformed. A non-2xx comes back as its classified *Error.
func (u *upstream) complete(ctx context.Context, call Call, req *fasthttp.Request, parse func(body []byte) (*ChatResponse, error)) (*ChatResponse, error) {
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	a := newAttempt(call, false, time.Now())
	stop, err := u.send(ctx, a, req, resp)
	if err != nil {
		return nil, err
	}
	stop()
	status := resp.StatusCode()
	body, err := uncompressedBody(resp)
	if err != nil {
		return nil, u.fail(ClassMalformed, status, "the answer's body could not be decoded", err)
	}
	if status < 200 || status > 299 {
		return nil, u.statusError(status, &resp.Header, body, time.Now())
	}
	cr, err := parse(body)
	if err != nil {
		return nil, u.fail(ClassMalformed, status, "the answer is not a chat completion", err)
	}
	return cr, nil
}

// uncompressedBody is the answer's body, decoded if a proxy compressed it
// although we did not ask, within maxResponseBody.
func uncompressedBody(resp *fasthttp.Response) ([]byte, error) {
	if ce := resp.Header.ContentEncoding(); len(ce) == 0 || strings.EqualFold(string(ce), "identity") {
		return resp.Body(), nil
	}
	return resp.BodyUncompressedWithLimit(maxResponseBody)
}

// openStream makes one streamed call and returns once the upstream answered
// 2xx with an event stream; anything else is read and classified like a
// non-streamed answer.
func (u *upstream) openStream(ctx context.Context, call Call, req *fasthttp.Request, dec eventDecoder) (*sseStream, error) {
	resp := fasthttp.AcquireResponse()
	resp.StreamBody = true
	a := newAttempt(call, true, time.Now())
	stop, err := u.send(ctx, a, req, resp)
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		return nil, err
	}
	s := &sseStream{
		up:       u,
		a:        a,
		resp:     resp,
		body:     resp.BodyStream(),
		dec:      dec,
		stopCtx:  stop,
		ctxDone:  ctx.Done(),
		deadline: a.deadline,
	}
	status := resp.StatusCode()
	ok2xx := status >= 200 && status <= 299
	if ok2xx && isEventStream(resp.Header.ContentType()) {
		s.sse = newSSEReader(readerFunc(s.read))
		return s, nil
	}
	// Not a stream: read what came (the attempt deadline still applies) and
	// classify it.
	body, complete := readLimited(s.body, maxErrorBody)
	var e *Error
	switch {
	case a.reason() != "" || ctx.Err() != nil:
		e = u.fail(ClassCanceled, status, "the call was canceled", nil)
	case !ok2xx:
		e = u.statusError(status, &resp.Header, body, time.Now())
	default:
		e = u.fail(ClassMalformed, status, fmt.Sprintf("expected an event stream, got %q", resp.Header.ContentType()), nil)
	}
	s.finish(complete)
	return nil, e
}

func isEventStream(contentType []byte) bool {
	mt, _, _ := strings.Cut(string(contentType), ";")
	return strings.EqualFold(strings.TrimSpace(mt), "text/event-stream")
}

// readLimited reads up to limit bytes; complete reports that the body ended
// within them.
func readLimited(r io.Reader, limit int64) (body []byte, complete bool) {
	if r == nil {
		return nil, true
	}
	body, err := io.ReadAll(io.LimitReader(r, limit))
	if err != nil {
		return body, false
	}
	if int64(len(body)) < limit {
		return body, true
	}
	n, err := r.Read(make([]byte, 1))
	return body, n == 0 && errors.Is(err, io.EOF)
}

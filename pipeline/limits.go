package pipeline

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/llm-gateway/gateway/providers"
)

// The ingress limits that are not fasthttp settings: the size of the
// conversation (server.max_content_chars) and the number of client
// connections (server.max_conns, server.max_conns_per_ip). The others are
// fasthttp's: ReadBufferSize (server.max_header_bytes), ReadTimeout,
// WriteTimeout and MaxRequestBodySize; see New.

// contentChars counts the characters of a request's message contents: the
// string contents and the text parts (other parts, such as images, are
// bounded by the body size alone).
func contentChars(req *providers.ChatRequest) int {
	n := 0
	for i := range req.Messages {
		c := &req.Messages[i].Content
		n += utf8.RuneCountInString(c.Text)
		for j := range c.Parts {
			n += utf8.RuneCountInString(c.Parts[j].Text)
		}
	}
	return n
}

func contentTooLong(n, limit int) *apiError {
	return invalid("messages", fmt.Sprintf("the message contents total %d characters; at most %d are accepted (server.max_content_chars)", n, limit))
}

// connLimiter is a listener that refuses connections past server.max_conns,
// and past server.max_conns_per_ip from one address, answering them itself in
// the OpenAI error shape. fasthttp's own limits (Concurrency, MaxConnsPerIP)
// answer in plain text, and its per-IP wrapper hides the socket from the
// client-disconnect watch (it does not implement syscall.Conn), so the
// gateway limits connections here and sets fasthttp's Concurrency above
// max_conns.
//
// A refused connection is answered and closed on its own goroutine, after a
// short read of what the client sent: closing a socket with unread data
// resets it, and the client could lose the answer.
type connLimiter struct {
	net.Listener
	max, maxPerIP int
	onReject      func(perIP bool)
	onRefuse      func(status int) // a connection refused on its first bytes
	refusals      [2]*apiError     // the refusals: [per ip?]

	open      atomic.Int64
	closeOnce sync.Once
	mu        sync.Mutex // guards perIP
	// perIP counts the open connections of each remote address; only
	// maintained when maxPerIP > 0.
	perIP map[string]int
}

func newConnLimiter(ln net.Listener, max, maxPerIP int, onReject func(perIP bool)) *connLimiter {
	l := &connLimiter{Listener: ln, max: max, maxPerIP: maxPerIP, onReject: onReject, perIP: make(map[string]int)}
	l.refusals[0] = &apiError{Status: 503, Type: typeServer, Code: "too_many_connections", RetryAfter: time.Second,
		Message: fmt.Sprintf("the gateway is serving its maximum of %d connections (server.max_conns); retry shortly", max)}
	l.refusals[1] = &apiError{Status: 429, Type: typeRateLimit, Code: "too_many_connections", RetryAfter: time.Second,
		Message: fmt.Sprintf("this address has %d connections open, the most allowed (server.max_conns_per_ip); reuse a connection or retry shortly", maxPerIP)}
	return l
}

// Close closes the listener once; later calls do nothing (fasthttp's
// shutdown and the server's both close it).
func (l *connLimiter) Close() error {
	err := net.ErrClosed
	l.closeOnce.Do(func() { err = l.Listener.Close() })
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Open returns the number of connections open now.
func (l *connLimiter) Open() int { return int(l.open.Load()) }

// Accept returns the next connection within the limits.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if n := l.open.Add(1); l.max > 0 && n > int64(l.max) {
			l.open.Add(-1)
			l.reject(c, false)
			continue
		}
		ip := ""
		if l.maxPerIP > 0 {
			ip = hostOf(c.RemoteAddr())
			l.mu.Lock()
			over := l.perIP[ip] >= l.maxPerIP
			if !over {
				l.perIP[ip]++
			}
			l.mu.Unlock()
			if over {
				l.open.Add(-1)
				l.reject(c, true)
				continue
			}
		}
		return &limitedConn{Conn: c, l: l, ip: ip}, nil
	}
}

func (l *connLimiter) release(ip string) {
	l.open.Add(-1)
	if l.maxPerIP > 0 {
		l.mu.Lock()
		if l.perIP[ip]--; l.perIP[ip] <= 0 {
			delete(l.perIP, ip)
		}
		l.mu.Unlock()
	}
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// rejectLinger bounds how long a refused connection is read before it is
// closed.
const rejectLinger = 500 * time.Millisecond

func (l *connLimiter) reject(c net.Conn, perIP bool) {
	if l.onReject != nil {
		l.onReject(perIP)
	}
	ae := l.refusals[b2i(perIP)]
	go func() { // off the accept loop
		defer c.Close()
		refuseConn(c, ae)
	}()
}

// refuseConn answers ae on c with its own Date and request ID, half-closes
// it, and reads what the client still sends: closing with unread bytes
// would reset the connection before the client reads the answer. Bounded
// by rejectLinger and 64 KiB. The caller closes c.
func refuseConn(c net.Conn, ae *apiError) {
	_ = c.SetDeadline(time.Now().Add(rejectLinger))
	_, _ = c.Write(rawErrorAnswer(newRequestID(), ae))
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

// rawErrorAnswer renders a whole HTTP/1.1 answer in the OpenAI error shape,
// for a connection that never reaches fasthttp.
func rawErrorAnswer(id string, ae *apiError) []byte {
	var ctx fasthttp.RequestCtx
	writeError(&ctx, id, ae, 0, 0)
	ctx.Response.Header.SetConnectionClose()
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	_ = ctx.Response.Write(w)
	_ = w.Flush()
	return b.Bytes()
}

// limitedConn gives its slot back once, on the first Close.
type limitedConn struct {
	net.Conn
	l    *connLimiter
	ip   string
	once sync.Once
	read bool // the first bytes were checked
}

// errRefused ends a connection refused on its first bytes (refuse). It wraps
// net.ErrClosed: the answer is written and counted and the sending side
// closed, and fasthttp writes no error response (nor calls the error
// handler, which would count it again) for a connection the server closed.
var errRefused = fmt.Errorf("the connection's first bytes are not an HTTP/1.1 request: %w", net.ErrClosed)

// Read checks a connection's first bytes once, for two mistakes that fasthttp
// would otherwise answer only after read_timeout (30 s by default), the
// client hanging all that time:
//
//   - A TLS handshake: a client configured with https:// sends a ClientHello,
//     a record that starts with 0x16, which no HTTP request starts with.
//     Unless a line feed happens to be among its bytes, fasthttp waits for
//     the end of a request line that never comes. The 400 is reported by the
//     TLS client as a protocol error ("wrong version number" in OpenSSL's
//     words).
//   - A request line that ends in a bare LF (a request typed into nc):
//     fasthttp reads the line, then waits for a CRLF CRLF that never comes.
//
// The refusal is a plain 400 at once; the read then fails, which fasthttp
// takes as a connection that sent nothing. Only a connection's first read is
// looked at, so a request line split across reads goes to fasthttp as before.
func (c *limitedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.read && n > 0 {
		c.read = true
		if ae := firstBytesRefusal(p[:n]); ae != nil {
			c.refuse(ae)
			return 0, errRefused
		}
	}
	return n, err
}

// firstBytesRefusal is the answer to a connection's first bytes b, or nil
// when they may be a request.
func firstBytesRefusal(b []byte) *apiError {
	if b[0] == 0x16 {
		return &apiError{Status: 400, Type: typeInvalidRequest, Code: "tls_on_plain_http",
			Message: "this port speaks plain HTTP/1.1, not TLS: use an http:// base URL"}
	}
	if i := bytes.IndexByte(b, '\n'); i > 0 && b[i-1] != '\r' {
		return &apiError{Status: 400, Type: typeInvalidRequest, Code: "bare_lf",
			Message: "the request line ends in a bare LF; HTTP/1.1 lines end in CRLF (\\r\\n)"}
	}
	return nil
}

// refuse counts and answers a refusal of the connection's first bytes.
func (c *limitedConn) refuse(ae *apiError) {
	if c.l.onRefuse != nil {
		c.l.onRefuse(ae.Status)
	}
	refuseConn(c.Conn, ae)
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}

// SyscallConn exposes the socket, so that watchClient can still see a client
// leave through this wrapper.
func (c *limitedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// CloseWrite half-closes the socket when it supports it.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

package pipeline

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// watchDelay is how long a request runs before its connection is watched.
// Most calls end sooner, and then the watch costs one timer instead of a
// goroutine and three syscalls; a client that left earlier is still seen at
// once when the watch starts (its socket is already readable).
const watchDelay = 20 * time.Millisecond

// watchClient cancels the request when its client closes the connection while
// the handler is still working, so the attempt in flight is abandoned instead
// of finishing for nobody (fasthttp itself notices only when a write fails).
//
// After watchDelay it waits in the runtime's poller for the socket to become
// readable and then peeks without consuming: zero bytes (EOF) or an error
// means the client is gone; any byte is the next pipelined request and means
// it is alive. stop ends the watch by setting a read deadline in the past,
// then clears it; fasthttp sets its own deadline before it reads the next
// request.
//
// A client that half-closes its side after sending the request looks gone to
// this check; HTTP/1.1 clients do not do that in practice.
//
// The watch lives in its callCtx and is one timer: on the request path,
// which almost always ends before watchDelay, it costs two allocations.
func (c *callCtx) watchClient(conn net.Conn) *clientWatch {
	w := &c.watch
	w.conn, w.ctx = conn, c
	if _, ok := conn.(syscall.Conn); ok {
		w.timer = time.AfterFunc(watchDelay, w.start)
	}
	return w
}

// clientWatch is one request's watch on its client's connection.
type clientWatch struct {
	conn  net.Conn
	ctx   *callCtx    // cancelled when the client is gone
	timer *time.Timer // nil when the connection has no socket to watch

	mu      sync.Mutex // guards stopped and done
	stopped bool
	done    chan struct{} // non-nil once the watch has started
}

// start runs on the timer's goroutine after watchDelay.
func (w *clientWatch) start() {
	rc, err := w.conn.(syscall.Conn).SyscallConn()
	if err != nil {
		return
	}
	w.mu.Lock()
	if w.stopped || w.conn.SetReadDeadline(time.Time{}) != nil {
		w.mu.Unlock()
		return
	}
	w.done = make(chan struct{})
	w.mu.Unlock()
	defer close(w.done)
	peekUntilClosed(rc, w.ctx.cancel)
}

// stop ends the watch and returns once it no longer touches the connection.
func (w *clientWatch) stop() {
	if w.timer == nil {
		return
	}
	w.mu.Lock()
	w.stopped = true
	w.timer.Stop()
	started := w.done
	w.mu.Unlock()
	if started == nil {
		return
	}
	_ = w.conn.SetReadDeadline(time.Unix(1, 0))
	<-started
	_ = w.conn.SetReadDeadline(time.Time{})
}

// peekUntilClosed blocks until the socket is readable or its read deadline
// passes, and cancels when the peer has closed or reset the connection.
func peekUntilClosed(rc syscall.RawConn, cancel func()) {
	var buf [1]byte
	_ = rc.Read(func(fd uintptr) bool {
		for {
			n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch {
			case errors.Is(err, syscall.EINTR):
				continue
			case errors.Is(err, syscall.EAGAIN):
				return false // nothing yet: wait for readability
			case err != nil || n == 0:
				cancel() // reset, or an orderly close by the client
			}
			return true
		}
	})
}

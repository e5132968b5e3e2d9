package pipeline

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// watchDelay is how long a request runs before its connection is watched.
// Most calls end sooner, and then the watch costs two short critical sections
// instead of a goroutine and three syscalls; a client that left earlier is
// still seen at once when the watch starts (its socket is already readable).
const watchDelay = 20 * time.Millisecond

// watchTick is how often the watches waiting for their delay are swept: a
// watch starts between watchDelay and watchDelay+watchTick after its
// request asked for it.
const watchTick = 10 * time.Millisecond

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
// The watch lives in its callCtx and waits for its delay in the server's
// watchList, so on the request path, which almost always ends before
// watchDelay, it allocates nothing.
func (c *callCtx) watchClient(conn net.Conn, l *watchList) *clientWatch {
	w := &c.watch
	w.conn, w.ctx = conn, c
	if _, ok := conn.(syscall.Conn); ok {
		w.list = l
		l.add(w)
	}
	return w
}

// clientWatch is one request's watch on its client's connection.
type clientWatch struct {
	conn net.Conn
	ctx  *callCtx   // cancelled when the client is gone
	list *watchList // nil when the connection has no socket to watch

	// Guarded by list.mu: the place in the list, while waiting.
	prev, next *clientWatch
	since      uint64 // the list's sweep count when it was added
	listed     bool

	mu      sync.Mutex // guards stopped and done
	stopped bool
	done    chan struct{} // non-nil once the watch has started
}

// start runs on a goroutine of its own once watchDelay has passed.
func (w *clientWatch) start() {
	rc, err := w.conn.(syscall.Conn).SyscallConn()
	if err != nil {
		return
	}
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	if err := w.conn.SetReadDeadline(time.Time{}); err != nil {
		w.mu.Unlock()
		if errors.Is(err, net.ErrClosed) {
			// The server closed the connection while the request was
			// still being answered: fasthttp does that when a write to
			// the client fails, e.g. the rest of a stream's first chunks
			// after the client left. Nothing will ever be read from it
			// again, so the client is gone. Without this, a stream whose
			// upstream then went quiet held its call until a heartbeat.
			w.ctx.cancel()
		}
		return
	}
	w.done = make(chan struct{})
	w.mu.Unlock()
	defer close(w.done)
	peekUntilClosed(rc, w.ctx.cancel)
}

// stop ends the watch and returns once it no longer touches the connection.
func (w *clientWatch) stop() {
	if w.list == nil {
		return
	}
	w.list.remove(w)
	w.mu.Lock()
	w.stopped = true
	started := w.done
	w.mu.Unlock()
	if started == nil {
		return
	}
	_ = w.conn.SetReadDeadline(time.Unix(1, 0))
	<-started
	_ = w.conn.SetReadDeadline(time.Time{})
}

// watchList holds the watches still waiting for their delay, oldest first.
// One sweeper goroutine, which runs only while the list is not empty, starts
// each watch that has waited watchDelay. It replaces a runtime timer per
// request (two allocations, and a timer heap to keep) with a link and an
// unlink under a mutex. The zero value is ready to use.
type watchList struct {
	mu         sync.Mutex
	head, tail *clientWatch
	sweeps     uint64 // sweeps so far
	sweeping   bool   // a sweeper goroutine runs
}

// dueAfter is the number of sweeps after its add at which a watch is due:
// an add falls anywhere between two sweeps, so the first sweep after it may
// come at once.
const dueAfter = uint64(watchDelay/watchTick) + 1

func (l *watchList) add(w *clientWatch) {
	l.mu.Lock()
	w.since = l.sweeps
	w.prev, w.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = w
	} else {
		l.head = w
	}
	l.tail = w
	w.listed = true
	startSweeper := !l.sweeping
	l.sweeping = true
	l.mu.Unlock()
	if startSweeper {
		go l.sweep()
	}
}

func (l *watchList) remove(w *clientWatch) {
	l.mu.Lock()
	if w.listed {
		l.unlink(w)
	}
	l.mu.Unlock()
}

// unlink takes w out of the list; l.mu must be held.
func (l *watchList) unlink(w *clientWatch) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		l.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		l.tail = w.prev
	}
	w.prev, w.next, w.listed = nil, nil, false
}

// sweep starts the due watches every watchTick, and returns once the list is
// empty.
func (l *watchList) sweep() {
	t := time.NewTicker(watchTick)
	defer t.Stop()
	for range t.C {
		l.mu.Lock()
		l.sweeps++
		for w := l.head; w != nil && l.sweeps-w.since >= dueAfter; w = l.head {
			l.unlink(w)
			go w.start()
		}
		if l.head == nil {
			l.sweeping = false
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
	}
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

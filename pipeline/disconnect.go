package pipeline

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"
)

// watchClient cancels the request when its client closes the connection while
// the handler is still working, so the attempt in flight is abandoned instead
// of finishing for nobody (fasthttp itself notices only when a write fails).
//
// It waits in the runtime's poller for the socket to become readable and then
// peeks without consuming: zero bytes (EOF) or an error means the client is
// gone; any byte is the next pipelined request and means it is alive. stop
// ends the watch by setting a read deadline in the past, then clears it;
// fasthttp sets its own deadline before it reads the next request.
//
// A client that half-closes its side after sending the request looks gone to
// this check; HTTP/1.1 clients do not do that in practice.
func watchClient(conn net.Conn, cancel context.CancelFunc) (stop func()) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return func() {}
	}
	rc, err := sc.SyscallConn()
	if err != nil || conn.SetReadDeadline(time.Time{}) != nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
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
	}()
	return func() {
		_ = conn.SetReadDeadline(time.Unix(1, 0))
		<-done
		_ = conn.SetReadDeadline(time.Time{})
	}
}

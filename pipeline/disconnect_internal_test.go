package pipeline

import (
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// sweeperGone waits for l's sweeper to end, which it does once l is empty.
func sweeperGone(t *testing.T, l *watchList) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		sweeping, empty := l.sweeping, l.head == nil && l.tail == nil
		l.mu.Unlock()
		if !sweeping && empty {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sweeper still running (empty list: %v)", empty)
		}
		time.Sleep(time.Millisecond)
	}
}

// The watch cancels when the client leaves, and when the server closed the
// connection before the watch started (fasthttp closes it when a write to
// the client fails): a connection it can no longer watch means the client is
// gone, rather than a watch that gives up.
func TestWatchCancelsWhenTheConnectionEnds(t *testing.T) {
	for _, closedBy := range []string{"client", "server"} {
		t.Run("closed by the "+closedBy, func(t *testing.T) {
			var l watchList
			server, client := tcpPair(t)
			c := newCallCtx()
			w := c.watchClient(server, &l)
			if closedBy == "client" {
				client.Close()
			} else {
				server.Close()
			}
			waitClosed(t, c.Done(), "the request context of a connection closed by the "+closedBy)
			w.stop()
			sweeperGone(t, &l)
		})
	}
}

// TestWatchStoppedBeforeItsDelay: a request that ends before watchDelay
// leaves nothing behind, and a client that leaves afterwards cancels nothing.
func TestWatchStoppedBeforeItsDelay(t *testing.T) {
	var l watchList
	server, client := tcpPair(t)
	c := newCallCtx()
	c.watchClient(server, &l).stop()
	client.Close()
	sweeperGone(t, &l)
	time.Sleep(watchDelay + 2*watchTick)
	if c.Err() != nil {
		t.Fatal("a stopped watch cancelled its request")
	}
	// The connection is left as it was: the server reads the client's
	// close itself (at once: the client is gone), not a deadline a watch
	// left in the past.
	if n, err := server.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read after the watch = %d, %v; want 0, EOF", n, err)
	}
}

// TestWatchKeepsALiveClient: a client still connected (here with its next
// request already sent) is not taken for gone, and stop leaves its bytes
// unread for the server.
func TestWatchKeepsALiveClient(t *testing.T) {
	var l watchList
	server, client := tcpPair(t)
	c := newCallCtx()
	w := c.watchClient(server, &l)
	if _, err := client.Write([]byte("GET")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(watchDelay + 3*watchTick)
	w.stop()
	if c.Err() != nil {
		t.Fatal("a live client was taken for gone")
	}
	buf := make([]byte, 3)
	_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := server.Read(buf); err != nil || string(buf[:n]) != "GET" {
		t.Fatalf("read after the watch = %q, %v", buf[:n], err)
	}
	sweeperGone(t, &l)
}

// TestWatchListLinks checks the list's links when watches leave from the
// middle, the head and the tail.
func TestWatchListLinks(t *testing.T) {
	var l watchList
	l.sweeping = true // no sweeper: the test owns the list
	ws := make([]*clientWatch, 4)
	for i := range ws {
		ws[i] = &clientWatch{}
		l.add(ws[i])
	}
	order := func() []int {
		var got []int
		for w := l.head; w != nil; w = w.next {
			for i := range ws {
				if ws[i] == w {
					got = append(got, i)
				}
			}
		}
		return got
	}
	for _, step := range []struct {
		remove int
		want   []int
	}{{1, []int{0, 2, 3}}, {0, []int{2, 3}}, {3, []int{2}}, {3, []int{2}}, {2, nil}} {
		l.remove(ws[step.remove])
		got := order()
		if len(got) != len(step.want) {
			t.Fatalf("after removing %d: %v, want %v", step.remove, got, step.want)
		}
		for i := range got {
			if got[i] != step.want[i] {
				t.Fatalf("after removing %d: %v, want %v", step.remove, got, step.want)
			}
		}
	}
	if l.head != nil || l.tail != nil {
		t.Fatal("empty list keeps a head or a tail")
	}
}

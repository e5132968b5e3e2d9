package mock

import (
	"context"
	"net"
	"sync"
)

// TB is the part of testing.TB that RawUpstream uses (the mock's binary does
// not link the testing package).
type TB interface {
	Helper()
	Fatal(args ...any)
	Cleanup(func())
}

// RawUpstream serves raw TCP on a free loopback port for a test and returns
// its URL: a provider that misbehaves below HTTP (a trickle, a black hole, a
// hand-written answer), which the Server cannot be made to be. serve runs on
// its own goroutine for each connection and owns it until it returns; ctx is
// cancelled at cleanup. At cleanup the listener and every connection still
// open are closed, and RawUpstream waits for every serve to return.
func RawUpstream(tb TB, serve func(ctx context.Context, c net.Conn)) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // guards conns
		conns = map[net.Conn]bool{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					_ = c.Close()
				}()
				serve(ctx, c)
			}()
		}
	}()
	tb.Cleanup(func() {
		cancel()
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + ln.Addr().String()
}

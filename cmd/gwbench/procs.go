package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// process is one server the bench started: the mock, the bare proxy or the
// orchestrator.
type process struct {
	Name string
	Addr string // host:port it listens on
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
	err  error         // why it exited; read after done
}

// Pid is the process id, for /proc.
func (p *process) Pid() int { return p.cmd.Process.Pid }

// stop asks the process to end (SIGTERM), then kills it if it has not
// within a second.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// processes is every process started, so all can be stopped on the way out
// (also on Ctrl-C). Safe for concurrent use.
type processes struct {
	mu   sync.Mutex // guards list
	list []*process
}

func (ps *processes) add(p *process) {
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
}

// pids are the processes' ids.
func (ps *processes) pids() []int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]int, 0, len(ps.list))
	for _, p := range ps.list {
		out = append(out, p.Pid())
	}
	return out
}

// stopAll stops them in the reverse order of their start.
func (ps *processes) stopAll() {
	ps.mu.Lock()
	list := ps.list
	ps.list = nil
	ps.mu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		list[i].stop()
	}
}

// freePort finds a port on 127.0.0.1 that is free now. The servers take only
// -listen, so there is a small race between closing this listener and the
// server taking the port; start retries on it.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// spec says how to start one server and how to tell it is ready.
type spec struct {
	Name  string
	Path  string
	Args  func(addr string) []string
	Ready func(ctx context.Context, addr string) error
	// Stderr is the file the process writes its stderr to, directly (not
	// through a pipe the bench would have to copy, on its shared cores).
	Stderr *os.File
}

// start starts s on a free port and waits until it answers, retrying with
// another port if the first one was taken in between (or the start failed).
func (ps *processes) start(ctx context.Context, s spec) (*process, error) {
	var lastErr error
	for range 3 {
		addr, err := freePort()
		if err != nil {
			return nil, err
		}
		p, err := ps.startOn(ctx, s, addr)
		if err == nil {
			return p, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("%s: %w", s.Name, lastErr)
}

func (ps *processes) startOn(ctx context.Context, s spec, addr string) (*process, error) {
	cmd := exec.Command(s.Path, s.Args(addr)...)
	cmd.Stdout = s.Stderr
	cmd.Stderr = s.Stderr
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{Name: s.Name, Addr: addr, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	ps.add(p)

	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if err := s.Ready(rctx, addr); err == nil {
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("exited before it was ready (%v): %s", p.err, tail(s.Stderr, 2<<10))
		case <-rctx.Done():
			p.stop()
			return nil, fmt.Errorf("not ready on %s within 10s: %s", addr, tail(s.Stderr, 2<<10))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// tail is the last n bytes of f, to explain a process that failed at start.
func tail(f *os.File, n int64) string {
	if f == nil {
		return ""
	}
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-n, 0)
	b := make([]byte, fi.Size()-off)
	k, _ := f.ReadAt(b, off)
	return string(bytes.TrimSpace(b[:k]))
}

// httpReady is ready when GET path answers 200.
func httpReady(path string) func(ctx context.Context, addr string) error {
	// No keep-alive: an idle readiness connection should not sit in the
	// server under test for the whole run.
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	return func(ctx context.Context, addr string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return nil
	}
}

// tcpReady is ready when a TCP connection is accepted.
func tcpReady(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

var errNotLinux = errors.New("gwbench reads /proc: it runs on Linux only")

func checkProc() error {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		return errNotLinux
	}
	return nil
}

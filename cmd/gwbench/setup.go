package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// setUp starts the mock, the bare proxy and the orchestrator, each on a free
// port, and checks that each answers the bench's requests as expected.
func (b *bench) setUp(ctx context.Context) error {
	var err error
	if b.tmp, err = os.MkdirTemp("", "gwbench-"); err != nil {
		return err
	}
	mockLog, err := b.logFile("mock-provider.log")
	if err != nil {
		return err
	}
	b.mock, err = b.procs.start(ctx, spec{
		Name:   "mock-provider",
		Path:   b.opts.Mock,
		Args:   func(addr string) []string { return []string{"-listen", addr, "-latency", "0"} },
		Ready:  httpReady("/mock/stats"),
		Stderr: mockLog,
	})
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	proxyLog, err := b.logFile("proxy.log")
	if err != nil {
		return err
	}
	proxy, err := b.procs.start(ctx, spec{
		Name:   "bare proxy",
		Path:   self,
		Args:   func(addr string) []string { return []string{"proxy", "-listen", addr, "-upstream", b.mock.Addr} },
		Ready:  tcpReady,
		Stderr: proxyLog,
	})
	if err != nil {
		return err
	}
	cfgPath, err := b.orchestratorConfig()
	if err != nil {
		return err
	}
	// The journal goes to a file, as an operator would run it.
	b.journal = filepath.Join(b.tmp, "orchestrator.log")
	jf, err := b.logFile("orchestrator.log")
	if err != nil {
		return err
	}
	orch, err := b.procs.start(ctx, spec{
		Name: "orchestrator",
		Path: b.opts.Orchestrator,
		Args: func(addr string) []string {
			args := []string{"-listen", addr, "-config", cfgPath}
			if b.opts.LogFormat != "" {
				args = append(args, "-log-format", b.opts.LogFormat)
			}
			return args
		},
		Ready:  httpReady("/healthz"),
		Stderr: jf,
	})
	if err != nil {
		return err
	}
	b.servers = []*server{
		{Name: "mock", Addr: b.mock.Addr, Front: b.mock},
		{Name: "proxy", Addr: proxy.Addr, Front: proxy},
		{Name: "orchestrator", Addr: orch.Addr, Front: orch},
	}
	b.orch = b.servers[2]
	b.logf("mock %s (pid %d), proxy %s (pid %d), orchestrator %s (pid %d), journal %s",
		b.mock.Addr, b.mock.Pid(), proxy.Addr, proxy.Pid(), orch.Addr, orch.Pid(), b.journal)
	return b.check()
}

// logFile creates a file in the temp dir for a child's stderr; it stays open
// until tearDown.
func (b *bench) logFile(name string) (*os.File, error) {
	f, err := os.Create(filepath.Join(b.tmp, name))
	if err != nil {
		return nil, err
	}
	b.files = append(b.files, f)
	return f, nil
}

// orchestratorConfig writes the embedded default configuration with the
// mock's address in place of 127.0.0.1:8001.
func (b *bench) orchestratorConfig() (string, error) {
	out, err := exec.Command(b.opts.Orchestrator, "-print-default-config").Output()
	if err != nil {
		return "", fmt.Errorf("%s -print-default-config: %w", b.opts.Orchestrator, err)
	}
	const defaultMock = "127.0.0.1:8001"
	if !bytes.Contains(out, []byte(defaultMock)) {
		return "", fmt.Errorf("the default configuration no longer names %s; gwbench cannot point it at its mock", defaultMock)
	}
	out = bytes.ReplaceAll(out, []byte(defaultMock), []byte(b.mock.Addr))
	path := filepath.Join(b.tmp, "orchestrator.yaml")
	return path, os.WriteFile(path, out, 0o644)
}

// check sends one request of each kind to each configuration: a bench of
// error answers would measure nothing.
func (b *bench) check() error {
	type probe struct {
		body   []byte
		expect int
		stream bool
	}
	for _, s := range b.servers {
		probes := []probe{{bodyPlain, 200, false}, {bodyStream, 200, true}}
		if s == b.orch {
			probes = append(probes, probe{bodyReject, 400, false})
		}
		for _, p := range probes {
			c := &conn{addr: s.Addr, deadline: time.Now().Add(5 * time.Second)}
			r, err := c.do(buildRequest(s.Addr, chatPath, p.body))
			c.close()
			if err != nil {
				return fmt.Errorf("%s: first request: %w", s.Name, err)
			}
			if r.Status != p.expect {
				return fmt.Errorf("%s: first request answered %d, want %d", s.Name, r.Status, p.expect)
			}
			if p.stream && r.FirstBody.IsZero() {
				return fmt.Errorf("%s: the streamed request got no body", s.Name)
			}
		}
	}
	return nil
}

func (b *bench) tearDown() {
	b.procs.stopAll()
	for _, f := range b.files {
		_ = f.Close()
	}
	if b.tmp == "" {
		return
	}
	if b.opts.Keep {
		b.logf("kept %s", b.tmp)
		return
	}
	_ = os.RemoveAll(b.tmp)
}

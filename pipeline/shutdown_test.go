package pipeline_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/llm-gateway/gateway/mock"
	"github.com/llm-gateway/gateway/pipeline"
)

// buildOrchestrator builds cmd/orchestrator into a temporary directory.
func buildOrchestrator(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "orchestrator")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/llm-gateway/gateway/cmd/orchestrator")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// slowSSE is an OpenAI-speaking upstream whose streams send one chunk every
// gap: a stream that is still flowing when the signal comes.
func slowSSE(t *testing.T, chunks int, gap time.Duration) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		for i := 0; i < chunks; i++ {
			fmt.Fprintf(w, `data: {"id":"chatcmpl-slow","object":"chat.completion.chunk","created":1,"model":"slow","choices":[{"index":0,"delta":{"content":"tok%d "},"finish_reason":null}]}`+"\n\n", i)
			fl.Flush()
			time.Sleep(gap)
		}
		fmt.Fprint(w, `data: {"id":"chatcmpl-slow","object":"chat.completion.chunk","created":1,"model":"slow","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\ndata: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// lockedLog collects a subprocess's stderr.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) add(s string) {
	l.mu.Lock()
	l.b.WriteString(s)
	l.mu.Unlock()
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedLog) count(needles ...string) int {
	n := 0
next:
	for _, line := range strings.Split(l.String(), "\n") {
		for _, s := range needles {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		n++
	}
	return n
}

// TestSIGTERMDrainsEveryAcceptedRequest runs the real binary, loads it with
// requests that are all in flight (the mock answers after 800 ms, and one
// stream flows for over a second), sends SIGTERM and checks what an operator
// relies on: every accepted request gets its complete answer, new
// connections are refused, the process exits 0, and its log is complete.
func TestSIGTERMDrainsEveryAcceptedRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the orchestrator binary")
	}
	bin := buildOrchestrator(t)
	m := mock.New(mock.Config{Latency: 800 * time.Millisecond})
	maddr, err := m.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	const streamChunks = 12
	slow := slowSSE(t, streamChunks, 100*time.Millisecond)
	cfgPath := filepath.Join(t.TempDir(), "gateway.yaml")
	cfg := fmt.Sprintf(`
server: {max_conns: 1000, drain_timeout: 10s}
policy: {attempt_timeout: 5s, deadline: 15s}
providers:
  openai: {kind: openai, base_url: "http://%[1]s"}
  anthropic: {kind: anthropic, base_url: "http://%[1]s"}
  slow: {kind: openai, base_url: "%[2]s"}
routes:
  gpt-4: [{provider: openai, model: gpt-4}, {provider: anthropic, model: claude-3-5-sonnet-20241022}]
  slow-stream: [{provider: slow, model: slow}]
`, maddr, slow)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "-config", cfgPath, "-listen", "127.0.0.1:0")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OPENAI_API_KEY=") && !strings.HasPrefix(kv, "ANTHROPIC_API_KEY=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	log := &lockedLog{}
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		r := bufio.NewReader(stderr)
		for {
			line, err := r.ReadString('\n')
			log.add(line)
			if err != nil {
				return
			}
		}
	}()
	go func() { <-logDone; exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	addr := waitFor(t, "the start line", func() string {
		if m := regexp.MustCompile(`action=start listen=(\S+)`).FindStringSubmatch(log.String()); m != nil {
			return m[1]
		}
		return ""
	})

	// The load: n plain requests and one stream, each on its own connection.
	const n = 50
	type result struct {
		id       string
		status   int
		body     string
		err      error
		finished time.Time
	}
	results := make(chan result, n+1)
	for i := 0; i < n; i++ {
		go func(id string) {
			body := `{"model":"gpt-4","messages":[{"role":"user","content":"drain ` + id + `"}]}`
			status, out, err := exchange(addr, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-Request-ID: "+id+
				"\r\nContent-Type: application/json\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body, nil)
			results <- result{id, status, out, err, time.Now()}
		}(fmt.Sprintf("drain-%02d", i))
	}
	firstChunk := make(chan struct{})
	go func() {
		body := `{"model":"slow-stream","stream":true,"messages":[{"role":"user","content":"stream through the drain"}]}`
		status, out, err := exchange(addr, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-Request-ID: drain-stream"+
			"\r\nContent-Type: application/json\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body, firstChunk)
		results <- result{"drain-stream", status, out, err, time.Now()}
	}()

	waitFor(t, "every request to be received", func() string {
		if log.count("action=received", "request_id=drain-") == n+1 {
			return "ok"
		}
		return ""
	})
	select {
	case <-firstChunk:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not begin")
	}
	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// New connections are refused once the listener is closed.
	waitFor(t, "new connections to be refused", func() string {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return "refused"
		}
		_ = c.Close()
		return ""
	})

	finishedAfter := 0
	for i := 0; i < n+1; i++ {
		r := <-results
		if r.err != nil || r.status != 200 {
			t.Fatalf("%s: %d %v\n%s", r.id, r.status, r.err, r.body)
		}
		if r.finished.After(sent) {
			finishedAfter++
		}
		if r.id == "drain-stream" {
			if !strings.HasSuffix(r.body, "data: [DONE]\n\n") || strings.Count(r.body, `"chat.completion.chunk"`) < streamChunks {
				t.Fatalf("the stream is incomplete:\n%s", r.body)
			}
			if !r.finished.After(sent) {
				t.Fatal("the stream ended before the signal: it proves nothing")
			}
			continue
		}
		var a struct {
			Object    string `json:"object"`
			Content   string `json:"content"`
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal([]byte(r.body), &a); err != nil || a.Object != "chat.completion" ||
			a.RequestID != r.id || !strings.Contains(a.Content, r.id) {
			t.Fatalf("%s: incomplete answer %v: %s", r.id, err, r.body)
		}
	}
	t.Logf("%d of %d requests finished after the signal", finishedAfter, n+1)
	if finishedAfter < n/2 {
		t.Fatalf("only %d of %d requests were still in flight at the signal: the test proves little", finishedAfter, n+1)
	}

	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the orchestrator exited with %v:\n%s", err, log.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the orchestrator did not exit after draining")
	}
	out := log.String()
	if got := log.count("action=success", "request_id=drain-"); got != n+1 {
		t.Fatalf("%d success lines, want %d:\n%s", got, n+1, out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasSuffix(out, "\n") || !strings.Contains(last, "action=stopped") || !strings.Contains(last, "drained=true") {
		t.Fatalf("the log does not end with a clean stop: %q", last)
	}
	if log.count("action=draining") != 1 {
		t.Fatalf("no draining line:\n%s", out)
	}
	t.Logf("the log ends:\n%s", strings.Join(lines[max(0, len(lines)-4):], "\n"))
	rep, err := pipeline.Replay(strings.NewReader(out), pipeline.ReplayOptions{})
	if err != nil || rep.Err() != nil {
		t.Fatalf("replay: %v %v", err, rep.Err())
	}
}

// waitFor polls get for ten seconds until it returns something.
func waitFor(t *testing.T, what string, get func() string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if v := get(); v != "" {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exchange sends one request on a new connection and reads the answer's
// status and whole body. begun, when set, is closed once the first byte of
// the body has arrived.
func exchange(addr, req string, begun chan struct{}) (int, string, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var body strings.Builder
	buf := make([]byte, 4096)
	for {
		k, err := resp.Body.Read(buf)
		if k > 0 && begun != nil && body.Len() == 0 {
			close(begun)
		}
		body.Write(buf[:k])
		if errors.Is(err, io.EOF) {
			return resp.StatusCode, body.String(), nil
		}
		if err != nil {
			return resp.StatusCode, body.String(), err
		}
	}
}

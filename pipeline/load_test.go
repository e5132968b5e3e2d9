package pipeline_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm-gateway/gateway/fsm"
	"github.com/llm-gateway/gateway/mock"
	"github.com/llm-gateway/gateway/pipeline"
	"github.com/llm-gateway/gateway/pipeline/config"
)

// The load run: thousands of requests at high concurrency, plain and
// streamed, some invalid, while faults are injected at random. Nothing may be
// lost: every request gets exactly one well-formed answer with a documented
// status, request IDs are unique, the journal replays cleanly and agrees with
// what the clients saw, and afterwards the gateway is back where it started
// (goroutines, connections, heap, file descriptors).
//
//	GATEWAY_LOAD_REQUESTS=20000 GATEWAY_LOAD_SEED=42 go test -race -run TestLoadWithRandomFaults ./pipeline/

const (
	loadConcurrency = 64
	// loadSlack is what an answer may take past the deadline by the
	// gateway's clock: writing it, under the race detector.
	loadSlack = 500 * time.Millisecond
	// loadClientSlack is what it may take past the deadline by the client's
	// clock, which also counts waiting to be read: a bound against hangs
	// that a CI machine running other packages' tests on the same two cores
	// still meets.
	loadClientSlack = 10 * time.Second
)

func loadEnvInt(name string, def int64) int64 {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return def
}

// loadFaults are the faults the injector picks from.
var loadFaults = []string{
	mock.FaultTimeout, mock.FaultRateLimit, mock.FaultServerError, mock.FaultOverloaded,
	mock.FaultMalformed, mock.FaultReset, mock.FaultHang, mock.FaultStreamCut, mock.FaultStreamStall,
	mock.FaultStreamTruncate,
}

// loadTally is what the clients saw.
type loadTally struct {
	mu         sync.Mutex
	statuses   map[int]int
	streamOK   int // 200 streams that ended in [DONE]
	streamErr  int // 200 streams that ended in an error event
	plainOK    int
	invalid    int // 400s for the requests sent invalid on purpose
	ids        map[string]int
	errs       []string
	maxElapsed time.Duration // the slowest first byte, by the client's clock
	maxGateway time.Duration // the slowest total_latency_ms of a JSON answer
}

func (l *loadTally) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) < 20 {
		l.errs = append(l.errs, fmt.Sprintf(format, args...))
	}
}

// loadRequest is one request of the run, all of it derived from the seed and
// its index.
type loadRequest struct {
	id      string // sent as X-Request-ID; "" lets the gateway mint one
	body    string
	stream  bool
	invalid bool
}

func newLoadRequest(seed uint64, i int) loadRequest {
	rng := rand.New(rand.NewPCG(seed, uint64(i)))
	models := []string{"gpt-4", "gpt-4o", "claude-3-5-sonnet", "gpt-4o-mini"}
	r := loadRequest{stream: rng.IntN(3) == 0}
	if rng.IntN(4) != 0 {
		r.id = fmt.Sprintf("load-%d-%d", seed, i)
	}
	model := models[rng.IntN(len(models))]
	extra := ""
	if r.stream {
		extra = `"stream":true,`
		if rng.IntN(2) == 0 {
			extra += `"stream_options":{"include_usage":true},`
		}
	}
	switch rng.IntN(20) {
	case 0:
		r.invalid = true
		r.body = `{"model":"` + model + `",` + extra + `"messages":[{"role":"robot","content":"load ` + strconv.Itoa(i) + `"}]}`
	default:
		r.body = `{"model":"` + model + `",` + extra + `"messages":[{"role":"user","content":"load ` + strconv.Itoa(i) + `"}]}`
	}
	return r
}

func TestLoadWithRandomFaultsLosesNothing(t *testing.T) {
	n := loadEnvInt("GATEWAY_LOAD_REQUESTS", 4000)
	if testing.Short() && os.Getenv("GATEWAY_LOAD_REQUESTS") == "" {
		n = 800
	}
	seed := uint64(loadEnvInt("GATEWAY_LOAD_SEED", time.Now().UnixNano()%1_000_000))
	t.Logf("load: %d requests at concurrency %d, seed %d (GATEWAY_LOAD_SEED=%d reproduces the requests and the fault sequence)", n, loadConcurrency, seed, seed)

	goroutinesBefore := loadGoroutines()
	fdsBefore := loadOpenFDs()
	t.Run("run", func(t *testing.T) { loadRun(t, int(n), seed) })

	// Everything the run started is stopped by now (its cleanups ran): the
	// goroutines are back where they were, but for fasthttp's own sleepers
	// (goleak's exceptions in TestMain), and so are the file descriptors
	// (client, server and upstream connections alike).
	if !relEventually(10*time.Second, func() bool { return loadGoroutines() <= goroutinesBefore }) {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d before the run, %d after it ended\n%s", goroutinesBefore, loadGoroutines(), buf[:runtime.Stack(buf, true)])
	}
	if fdsBefore >= 0 && !relEventually(5*time.Second, func() bool { return loadOpenFDs() <= fdsBefore+2 }) {
		t.Errorf("file descriptors: %d before the run, %d after it ended; sockets: %v", fdsBefore, loadOpenFDs(), loadSockets())
	}
	t.Logf("after the run: goroutines %d (before %d), file descriptors %d (before %d)", loadGoroutines(), goroutinesBefore, loadOpenFDs(), fdsBefore)
}

// loadBackground are fasthttp's process-wide sleepers, which goleak ignores
// too (main_test.go): they end on their own schedule, not with a server.
var loadBackground = []string{
	"fasthttp.(*HostClient).connsCleaner",
	"fasthttp.(*workerPool).Start.func2",
	"fasthttp.updateServerDate.func1",
	"fasthttp.(*Client).mCleaner",
	"fasthttp.(*TCPDialer).tcpAddrsClean",
}

// loadGoroutines counts the goroutines, fasthttp's background sleepers
// aside.
func loadGoroutines() int {
	buf := make([]byte, 4<<20)
	n := 0
next:
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		for _, bg := range loadBackground {
			if strings.Contains(g, bg) {
				continue next
			}
		}
		n++
	}
	return n
}

// loadDeadline is the request deadline of the load run.
const loadDeadline = 3 * time.Second

// loadPolicy is relPolicy with room for 64 clients on a CI machine whose two
// cores also run other packages' tests: attempt timeout 300 ms (the injected
// timeouts last 200-800 ms, so some are cut and some are not), deadline 3 s,
// breakers that trip after 5 failures and probe after 300 ms.
func loadPolicy(c *config.Config) {
	relPolicy(c)
	c.Pipeline.Policy.AttemptTimeout = 300 * time.Millisecond
	c.Pipeline.Policy.FirstTokenTimeout = 300 * time.Millisecond
	c.Pipeline.Policy.Deadline = loadDeadline
	c.Providers.Breaker.FailureThreshold = 5
	c.Providers.Breaker.OpenTimeout = 300 * time.Millisecond
}

func loadRun(t *testing.T, n int, seed uint64) {
	g := startGateway(t, loadPolicy)
	addr := strings.TrimPrefix(g.url, "http://")
	tr := &http.Transport{MaxIdleConnsPerHost: loadConcurrency, MaxConnsPerHost: loadConcurrency, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: loadDeadline + loadClientSlack + 5*time.Second}

	// Warm up at full concurrency, so the pools (fasthttp's workers, both
	// sides' connections) are at their working size before the baseline.
	warm := &loadTally{statuses: map[int]int{}, ids: map[string]int{}}
	loadDrive(client, addr, seed+1, 256, warm)
	if len(warm.errs) > 0 {
		t.Fatalf("warm-up without faults: %v %v", warm.statuses, warm.errs)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutinesBefore := runtime.NumGoroutine()
	fdsBefore := loadOpenFDs()

	// The injector adds a random fault every 20 ms while the run lasts;
	// its sequence comes from the seed (which requests it hits depends on
	// the scheduling).
	stop := make(chan struct{})
	var injected sync.Map
	var injectorDone sync.WaitGroup
	injectorDone.Add(1)
	go func() {
		defer injectorDone.Done()
		rng := rand.New(rand.NewPCG(seed, 0xfa017))
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 100_000; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			// Rules for a provider whose breaker is open are not consumed
			// (nobody calls it), and would all land on its probes: clear
			// what is left now and then, so faults come in short bursts.
			if len(g.mock.Faults()) >= 3 {
				g.mock.ClearFaults()
			}
			r := mock.Rule{
				Provider: []string{"openai", "anthropic", "*"}[rng.IntN(3)],
				Fault:    loadFaults[rng.IntN(len(loadFaults))],
				Count:    1 + rng.IntN(2),
			}
			if r.Fault == mock.FaultTimeout {
				r.DelayMS = 200 + rng.IntN(600)
			}
			if r.Fault == mock.FaultServerError {
				r.Status = []int{500, 502, 503, 504}[rng.IntN(4)]
			}
			if err := g.mock.AddFault(r); err != nil {
				t.Errorf("AddFault: %v", err)
				return
			}
			v, _ := injected.LoadOrStore(r.Fault, new(atomic.Int64))
			v.(*atomic.Int64).Add(int64(r.Count))
		}
	}()

	start := time.Now()
	tally := &loadTally{statuses: map[int]int{}, ids: map[string]int{}}
	loadDrive(client, addr, seed, n, tally)
	elapsed := time.Since(start)
	close(stop)
	injectorDone.Wait()
	g.mock.ClearFaults()
	tr.CloseIdleConnections()

	faults := map[string]int64{}
	injected.Range(func(k, v any) bool { faults[k.(string)] = v.(*atomic.Int64).Load(); return true })
	t.Logf("%d requests in %s (%.0f/s); statuses %v; streams: %d [DONE], %d error events; slowest answer %s by the gateway's clock, first byte %s by the client's; faults injected (requests to fault): %v; mock outcomes: %+v",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), tally.statuses, tally.streamOK, tally.streamErr,
		tally.maxGateway, tally.maxElapsed.Round(time.Millisecond), faults, g.mock.Stats())

	breakerLog := map[string]int{}
	for _, p := range []string{"openai", "anthropic"} {
		for _, a := range []string{"trip", "probe", "recover", "reopen"} {
			breakerLog[p+"/"+a] = len(g.lines("machine=breaker", "provider="+p+" ", "action="+a+" "))
		}
	}
	t.Logf("breaker transitions: %v; states now: openai %s, anthropic %s", breakerLog,
		g.srv.Breakers()["openai"].State(), g.srv.Breakers()["anthropic"].State())

	// Every request answered once, well-formed, with a documented status.
	for _, e := range tally.errs {
		t.Error(e)
	}
	total := 0
	for _, c := range tally.statuses {
		total += c
	}
	if total != n {
		t.Errorf("%d answers for %d requests", total, n)
	}
	if len(tally.ids) != n {
		t.Errorf("%d distinct request IDs for %d requests", len(tally.ids), n)
	}
	for id, c := range tally.ids {
		if c != 1 {
			t.Errorf("request ID %s answered %d times", id, c)
		}
	}

	// The journal agrees with the clients: every journey ended, one per
	// request, with the same outcome.
	var rep *pipeline.ReplayReport
	received := int64(n + 256)
	ok := relEventually(10*time.Second, func() bool {
		g.srv.Journal().Flush()
		var err error
		rep, err = pipeline.Replay(strings.NewReader(g.log.String()), pipeline.ReplayOptions{AllowIncomplete: true})
		return err == nil && rep.Requests.Received == received && rep.Requests.Succeeded+rep.Requests.Failed == received
	})
	if !ok {
		t.Fatalf("the journal does not account for every request: %+v", rep.Requests)
	}
	if err := rep.Err(); err != nil {
		t.Fatalf("replay: %v", err)
	}
	wantOK := int64(tally.plainOK + tally.streamOK + warm.statuses[200])
	if rep.Requests.Succeeded != wantOK {
		t.Errorf("the journal has %d successes, the clients saw %d", rep.Requests.Succeeded, wantOK)
	}
	for status, c := range tally.statuses {
		want := int64(c)
		switch status {
		case 200:
			continue
		case 400:
			want += int64(warm.invalid)
		case 502:
			want += int64(tally.streamErr)
		}
		if got := rep.Requests.ByStatus[status]; got != want {
			t.Errorf("the journal has %d requests failed with %d, the clients saw %d", got, status, want)
		}
	}
	if got := rep.Requests.ByStatus[502]; tally.statuses[502] == 0 && got != int64(tally.streamErr) {
		t.Errorf("the journal has %d requests failed with 502, the clients saw %d (as stream error events)", got, tally.streamErr)
	}

	// With the faults gone, both providers serve again once their
	// breakers probe: no breaker is left stuck (a probe that never
	// reported would hold a half-open breaker for good).
	time.Sleep(350 * time.Millisecond) // open_timeout
	for _, model := range []string{"gpt-4", "claude-3-5-sonnet"} {
		if !relEventually(3*time.Second, func() bool {
			return relDo(addr, relRequestBody(model, "recovered", false), 5*time.Second).status == 200
		}) {
			t.Errorf("%s is not served after the faults ended", model)
		}
	}
	for _, p := range []string{"openai", "anthropic"} {
		if !relEventually(3*time.Second, func() bool {
			_ = relDo(addr, relRequestBody(map[string]string{"openai": "gpt-4", "anthropic": "claude-3-5-sonnet"}[p], "recovered", false), 5*time.Second)
			return g.srv.Breakers()[p].State() == fsm.Closed
		}) {
			t.Errorf("the %s breaker is %s after the faults ended", p, g.srv.Breakers()[p].State())
		}
	}

	// Back to the baseline while the gateway still runs: no client
	// connection left open, goroutines and heap where they were.
	if !relEventually(10*time.Second, func() bool { return loadGauge(t, addr, "gateway_connections_open") <= 1 }) {
		t.Errorf("%v client connections still open after the clients closed theirs", loadGauge(t, addr, "gateway_connections_open"))
	}
	if v := loadGauge(t, addr, "gateway_requests_in_flight"); v != 0 {
		t.Errorf("%v requests still in flight", v)
	}
	if v := loadGauge(t, addr, "gateway_streams_in_flight"); v != 0 {
		t.Errorf("%v streams still in flight", v)
	}
	tr.CloseIdleConnections()
	if !relEventually(10*time.Second, func() bool { return runtime.NumGoroutine() <= goroutinesBefore+8 }) {
		t.Errorf("goroutines grew from %d to %d", goroutinesBefore, runtime.NumGoroutine())
	}
	// No connection growth: the upstream pools stay at their working size
	// (faults replace connections, they do not add to them).
	if fdsBefore >= 0 {
		if !relEventually(10*time.Second, func() bool { return loadOpenFDs() <= fdsBefore+loadConcurrency/4 }) {
			t.Errorf("file descriptors grew from %d to %d; sockets: %v", fdsBefore, loadOpenFDs(), loadSockets())
		}
	}
	t.Logf("file descriptors: %d after the warm-up, %d after the run", fdsBefore, loadOpenFDs())
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	logBytes := uint64(len(g.log.String()))
	// The journal is kept in memory by the test; everything else must be
	// back near the baseline. 64 MiB is generous: a leak of one request's
	// buffers per request would exceed it.
	limit := before.HeapInuse + 64<<20 + 3*logBytes
	t.Logf("heap in use: %d MiB before, %d MiB after (journal %d MiB); goroutines %d before, %d after",
		before.HeapInuse>>20, after.HeapInuse>>20, logBytes>>20, goroutinesBefore, runtime.NumGoroutine())
	if after.HeapInuse > limit {
		t.Errorf("heap in use grew from %d to %d bytes (journal %d bytes)", before.HeapInuse, after.HeapInuse, logBytes)
	}
}

// loadDrive sends n requests from loadConcurrency workers and tallies the
// answers.
func loadDrive(client *http.Client, addr string, seed uint64, n int, tally *loadTally) {
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < loadConcurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				loadOne(client, addr, newLoadRequest(seed, i), tally)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

func loadOne(client *http.Client, addr string, r loadRequest, tally *loadTally) {
	ctx, cancel := context.WithTimeout(context.Background(), loadDeadline+loadClientSlack+5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/v1/chat/completions", strings.NewReader(r.body))
	req.Header.Set("Content-Type", "application/json")
	if r.id != "" {
		req.Header.Set("X-Request-ID", r.id)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		tally.fail("%s: no answer: %v", r.id, err)
		tally.mu.Lock()
		tally.statuses[0]++
		tally.mu.Unlock()
		return
	}
	firstByte := time.Since(start)
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	a := relAnswer{status: resp.StatusCode, header: resp.Header, body: body, firstByte: firstByte, total: time.Since(start), err: err}

	id := resp.Header.Get("X-Request-ID")
	var end relStreamEnd
	switch {
	case r.invalid:
		if a.status != 400 || !json.Valid(body) {
			tally.fail("%s: an invalid request got %d %s", r.id, a.status, hostileTrim(body))
		}
	default:
		_, end, err = relCheck(a)
		if err != nil {
			tally.fail("%s: %v", r.id, err)
		}
	}
	if r.id != "" && id != r.id {
		tally.fail("sent X-Request-ID %s, got %q", r.id, id)
	}
	if r.id == "" && !strings.HasPrefix(id, "req_") {
		tally.fail("a minted request ID %q", id)
	}
	// In time: by the gateway's own clock (total_latency_ms, from the
	// moment it had the request), within the deadline and a little slack;
	// by the client's clock, which also counts the time 64 clients wait to
	// be read by a machine that may be running other tests, without hanging.
	var lat struct {
		Ms *int64 `json:"total_latency_ms"`
	}
	if json.Unmarshal(body, &lat) == nil && lat.Ms != nil {
		if d := time.Duration(*lat.Ms) * time.Millisecond; d > loadDeadline+loadSlack {
			tally.fail("%s: answered after %s by the gateway's clock, past the deadline %s", id, d, loadDeadline)
		}
	}
	if limit := loadDeadline + loadClientSlack; a.firstByte > limit || (!r.stream && a.total > limit) {
		tally.fail("%s: answered after %s (first byte %s) by the client's clock", id, a.total, a.firstByte)
	}
	tally.mu.Lock()
	defer tally.mu.Unlock()
	tally.statuses[a.status]++
	tally.ids[id]++
	tally.maxElapsed = max(tally.maxElapsed, a.firstByte)
	if lat.Ms != nil {
		tally.maxGateway = max(tally.maxGateway, time.Duration(*lat.Ms)*time.Millisecond)
	}
	switch {
	case r.invalid:
		tally.invalid++
	case a.status == 200 && end == relDone:
		tally.streamOK++
	case a.status == 200 && end == relErrorEvent:
		tally.streamErr++
	case a.status == 200:
		tally.plainOK++
	}
}

// loadGauge reads one unlabelled gauge from GET /metrics.
func loadGauge(t *testing.T, addr, name string) float64 {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

// loadOpenFDs counts the process's open file descriptors (-1 where /proc is
// not available).
func loadOpenFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// loadSockets describes the process's open TCP sockets as "state local->remote"
// lines, from /proc (nil where it is not available): what a descriptor count
// that did not come back is made of.
func loadSockets() []string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	inodes := map[string]bool{}
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			if in, ok := strings.CutPrefix(l, "socket:["); ok {
				inodes[strings.TrimSuffix(in, "]")] = true
			}
		}
	}
	states := map[string]string{"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "07": "CLOSE", "09": "LAST_ACK"}
	port := func(hexAddr string) string {
		_, p, _ := strings.Cut(hexAddr, ":")
		n, _ := strconv.ParseUint(p, 16, 32)
		return strconv.FormatUint(n, 10)
	}
	var out []string
	for _, file := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || !inodes[f[9]] {
				continue
			}
			st := states[f[3]]
			if st == "" {
				st = f[3]
			}
			out = append(out, st+" :"+port(f[1])+"->:"+port(f[2]))
		}
	}
	return out
}

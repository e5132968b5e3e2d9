package mock_test

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llm-gateway/gateway/mock"
)

const (
	oaOK = `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`
	anOK = `{"model":"claude-3-5-sonnet","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
)

func TestFaultsApplyInOrderEachConsumingItsCount(t *testing.T) {
	s, base := startMock(t, mock.Config{})
	c := httpClient(t)
	addFault(t, s, mock.Rule{Provider: "openai", Fault: mock.FaultRateLimit, Count: 2})
	addFault(t, s, mock.Rule{Provider: "*", Fault: mock.FaultServerError, Status: 503, Count: 1})
	var got []int
	for range 5 {
		got = append(got, post(t, c, base+"/v1/chat/completions", oaOK, oaHeaders...).status)
	}
	if want := []int{429, 429, 503, 200, 200}; !equalInts(got, want) {
		t.Errorf("statuses = %v, want %v", got, want)
	}
	if n := len(s.Faults()); n != 0 {
		t.Errorf("%d rules left, want 0", n)
	}
}

func TestRuleWithCountZeroLastsUntilCleared(t *testing.T) {
	s, base := startMock(t, mock.Config{})
	c := httpClient(t)
	addFault(t, s, mock.Rule{Fault: mock.FaultOverloaded})
	for range 3 {
		if res := post(t, c, base+"/v1/messages", anOK, anHeaders...); res.status != 529 {
			t.Fatalf("status = %d, want 529", res.status)
		}
	}
	if r := s.Faults(); len(r) != 1 || r[0].Count != 0 {
		t.Errorf("rules = %+v, want the unlimited rule still there", r)
	}
	s.ClearFaults()
	if res := post(t, c, base+"/v1/messages", anOK, anHeaders...); res.status != 200 {
		t.Errorf("after ClearFaults status = %d", res.status)
	}
}

func TestRuleForOneProviderLeavesTheOtherAlone(t *testing.T) {
	s, base := startMock(t, mock.Config{})
	c := httpClient(t)
	addFault(t, s, mock.Rule{Provider: "anthropic", Fault: mock.FaultServerError, Count: 1})
	if res := post(t, c, base+"/v1/chat/completions", oaOK, oaHeaders...); res.status != 200 {
		t.Errorf("openai status = %d, want 200", res.status)
	}
	if res := post(t, c, base+"/v1/messages", anOK, anHeaders...); res.status != 500 {
		t.Errorf("anthropic status = %d, want 500", res.status)
	}
}

func TestStreamCutRuleIsSkippedByNonStreamRequests(t *testing.T) {
	s, base := startMock(t, mock.Config{})
	c := httpClient(t)
	addFault(t, s, mock.Rule{Fault: mock.FaultStreamCut, Count: 1})
	addFault(t, s, mock.Rule{Fault: mock.FaultRateLimit, Count: 1})
	// The whole call skips stream_cut and takes the rate limit behind it.
	if res := post(t, c, base+"/v1/chat/completions", oaOK, oaHeaders...); res.status != 429 {
		t.Errorf("status = %d, want 429", res.status)
	}
	if r := s.Faults(); len(r) != 1 || r[0].Fault != mock.FaultStreamCut {
		t.Errorf("rules = %+v, want the stream_cut rule untouched", r)
	}
}

func TestControlAPIValidatesRules(t *testing.T) {
	tests := []struct {
		name, body, inError string
	}{
		{"unknown fault", `{"fault":"explode"}`, `unknown fault "explode"`},
		{"missing fault", `{"provider":"openai"}`, `unknown fault ""`},
		{"unknown provider", `{"provider":"gemini","fault":"hang"}`, `unknown provider "gemini"`},
		{"negative count", `{"fault":"hang","count":-1}`, "count must not be negative"},
		{"negative delay", `{"fault":"timeout","delay_ms":-5}`, "delay_ms must not be negative"},
		{"negative retry_after_s", `{"fault":"rate_limit","retry_after_s":-1}`, "retry_after_s must not be negative"},
		{"status out of range", `{"fault":"server_error","status":200}`, "status must be between 400 and 599"},
		{"a delay that would overflow", `{"fault":"timeout","delay_ms":9300000000000}`, "delay_ms must be at most 86400000"},
		{"status on another fault", `{"fault":"rate_limit","status":500}`, "status applies only to server_error"},
		{"delay on another fault", `{"fault":"hang","delay_ms":5}`, "delay_ms applies only to timeout"},
		{"retry_after_s on another fault", `{"fault":"server_error","retry_after_s":5}`, "retry_after_s applies only to rate_limit"},
		{"misspelt field", `{"fault":"hang","cuont":1}`, `unknown field "cuont"`},
		{"not JSON", `fault=hang`, "invalid rule JSON"},
	}
	s, base := startMock(t, mock.Config{})
	c := httpClient(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := post(t, c, base+"/mock/faults", tt.body)
			if res.status != 400 {
				t.Fatalf("status = %d, want 400", res.status)
			}
			if msg, _ := decode(t, res.body)["error"].(string); !strings.Contains(msg, tt.inError) {
				t.Errorf("error = %q, want it to contain %q", msg, tt.inError)
			}
		})
	}
	if n := len(s.Faults()); n != 0 {
		t.Errorf("%d rules added by bad requests", n)
	}
	if err := s.AddFault(mock.Rule{Fault: "nope"}); !errors.Is(err, mock.ErrInvalidRule) {
		t.Errorf("AddFault(bad) = %v, want ErrInvalidRule", err)
	}
}

func TestControlAPIAddsListsAndClearsRules(t *testing.T) {
	_, base := startMock(t, mock.Config{})
	c := httpClient(t)
	res := post(t, c, base+"/mock/faults", `{"provider":"anthropic","fault":"timeout","count":2}`)
	if res.status != 201 {
		t.Fatalf("add: status %d %s", res.status, res.body)
	}
	post(t, c, base+"/mock/faults", `{"fault":"rate_limit"}`)
	res = do(t, c, "GET", base+"/mock/faults", "")
	var rules []mock.Rule
	if err := json.Unmarshal(res.body, &rules); err != nil {
		t.Fatal(err)
	}
	want := []mock.Rule{
		{Provider: "anthropic", Fault: "timeout", Count: 2, DelayMS: 10000},
		{Provider: "*", Fault: "rate_limit", RetryAfterS: 1},
	}
	if len(rules) != 2 || rules[0] != want[0] || rules[1] != want[1] {
		t.Errorf("rules = %+v, want defaults filled in: %+v", rules, want)
	}
	if res := do(t, c, "DELETE", base+"/mock/faults", ""); res.status != 200 {
		t.Errorf("delete: status %d", res.status)
	}
	if res := do(t, c, "GET", base+"/mock/faults", ""); strings.TrimSpace(string(res.body)) != "[]" {
		t.Errorf("after delete: %s", res.body)
	}
	if res := do(t, c, "PUT", base+"/mock/faults", ""); res.status != 405 {
		t.Errorf("PUT: status %d, want 405", res.status)
	}
	if res := do(t, c, "GET", base+"/mock/nothing", ""); res.status != 404 {
		t.Errorf("unknown path: status %d, want 404", res.status)
	}
}

func TestStatsCountEveryOutcomeAndAreStableWithoutTraffic(t *testing.T) {
	s, base := startMock(t, mock.Config{})
	c := httpClient(t)
	addFault(t, s, mock.Rule{Provider: "anthropic", Fault: mock.FaultRateLimit, Count: 1})
	post(t, c, base+"/v1/chat/completions", oaOK, oaHeaders...)
	post(t, c, base+"/v1/chat/completions", `{}`, oaHeaders...)
	post(t, c, base+"/v1/chat/completions", oaOK)
	post(t, c, base+"/v1/messages", anOK, anHeaders...)
	post(t, c, base+"/v1/messages", anOK, anHeaders...)

	first := do(t, c, "GET", base+"/mock/stats", "").body
	second := do(t, c, "GET", base+"/mock/stats", "").body
	if string(first) != string(second) {
		t.Errorf("two reads differ:\n%s\n%s", first, second)
	}
	var st mock.Stats
	if err := json.Unmarshal(first, &st); err != nil {
		t.Fatal(err)
	}
	if st.Requests("openai") != 3 || st.Outcome("openai", "ok") != 1 || st.Outcome("openai", "invalid") != 1 || st.Outcome("openai", "auth") != 1 {
		t.Errorf("openai = %+v", st["openai"])
	}
	if st.Requests("anthropic") != 2 || st.Outcome("anthropic", "ok") != 1 || st.Outcome("anthropic", "rate_limit") != 1 {
		t.Errorf("anthropic = %+v", st["anthropic"])
	}
	// Both providers and every outcome are always present.
	for _, p := range []string{"openai", "anthropic"} {
		for _, o := range []string{"ok", "invalid", "auth", "timeout", "rate_limit", "server_error", "overloaded", "malformed", "reset", "hang", "stream_cut"} {
			if _, ok := st[p].Outcomes[o]; !ok {
				t.Errorf("%s has no %q outcome", p, o)
			}
		}
	}
	if !strings.HasPrefix(string(first), `{"anthropic":{"requests":2,"outcomes":{"auth":0,`) {
		t.Errorf("keys are not sorted: %s", first)
	}
	if got := s.Stats(); got.Requests("openai") != 3 {
		t.Errorf("Server.Stats() disagrees: %+v", got)
	}
}

func TestLogRecordsWhatWasSent(t *testing.T) {
	_, base := startMock(t, mock.Config{})
	c := httpClient(t)
	post(t, c, base+"/v1/chat/completions", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`, append([]string{"X-Request-ID", "gw-1"}, oaHeaders...)...)
	post(t, c, base+"/v1/messages", anOK, "x-api-key", "k")
	var entries []mock.LogEntry
	if err := json.Unmarshal(do(t, c, "GET", base+"/mock/log", "").body, &entries); err != nil {
		t.Fatal(err)
	}
	want := []mock.LogEntry{
		{Provider: "openai", RequestID: "gw-1", Model: "gpt-4o", Stream: true, Outcome: "ok", Body: `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
		{Provider: "anthropic", RequestID: "", Model: "", Stream: false, Outcome: "invalid", Body: anOK},
	}
	if len(entries) != 2 || entries[0] != want[0] || entries[1] != want[1] {
		t.Errorf("log =\n%+v\nwant\n%+v", entries, want)
	}
}

func TestLogKeepsTheLastThousandAndTruncatesBodies(t *testing.T) {
	s, base := startMock(t, mock.Config{})
	c := httpClient(t)
	big := `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("x", mock.MaxLogBody) + `"}]}`
	post(t, c, base+"/v1/chat/completions", big, oaHeaders...)
	for i := range mock.LogSize {
		post(t, c, base+"/v1/chat/completions", oaOK, append([]string{"X-Request-ID", "n" + itoa(i)}, oaHeaders...)...)
	}
	log := s.Log()
	if len(log) != mock.LogSize || log[0].RequestID != "n0" || log[len(log)-1].RequestID != "n"+itoa(mock.LogSize-1) {
		t.Errorf("log has %d entries from %q to %q", len(log), log[0].RequestID, log[len(log)-1].RequestID)
	}
	s.Reset()
	post(t, c, base+"/v1/chat/completions", big, oaHeaders...)
	if log := s.Log(); len(log) != 1 || len(log[0].Body) != mock.MaxLogBody {
		t.Errorf("body logged with %d bytes, want %d", len(log[0].Body), mock.MaxLogBody)
	}
}

func TestResetClearsRulesCountersAndLog(t *testing.T) {
	s, base := startMock(t, mock.Config{})
	c := httpClient(t)
	addFault(t, s, mock.Rule{Fault: mock.FaultHang})
	post(t, c, base+"/v1/chat/completions", `{}`, oaHeaders...)
	if res := post(t, c, base+"/mock/reset", ""); res.status != 200 {
		t.Fatalf("reset: status %d", res.status)
	}
	if len(s.Faults()) != 0 || len(s.Log()) != 0 || s.Stats().Requests("openai") != 0 {
		t.Errorf("after reset: rules %v, log %d, stats %+v", s.Faults(), len(s.Log()), s.Stats())
	}
}

// TestCloseUnblocksHangAndTimeout holds one request in a hang and one in a
// 10 s timeout, then closes the server: both clients must be released at once
// and (TestMain's goleak) no goroutine may be left behind.
func TestCloseUnblocksHangAndTimeout(t *testing.T) {
	s := mock.New(mock.Config{})
	addr, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr
	c := httpClient(t)
	addFault(t, s, mock.Rule{Provider: "openai", Fault: mock.FaultHang, Count: 1})
	addFault(t, s, mock.Rule{Provider: "anthropic", Fault: mock.FaultTimeout, Count: 1})
	var wg sync.WaitGroup
	done := make(chan string, 2)
	for _, r := range []struct{ url, body string }{{"/v1/chat/completions", oaOK}, {"/v1/messages", anOK}} {
		wg.Go(func() {
			h := oaHeaders
			if r.url == "/v1/messages" {
				h = anHeaders
			}
			req, _ := newRequest("POST", base+r.url, r.body, h...)
			res, err := c.Do(req)
			if err == nil {
				res.Body.Close()
			}
			done <- r.url
		})
	}
	waitFor(t, func() bool { st := s.Stats(); return st.Requests("openai")+st.Requests("anthropic") == 2 })
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	wg.Wait()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close and the blocked clients took %v", d)
	}
	if _, err := s.Start("127.0.0.1:0"); err == nil {
		t.Error("Start after Close succeeded")
	}
}

func TestConcurrentTrafficIsCountedExactly(t *testing.T) {
	s, base := startMock(t, mock.Config{})
	const workers, each = 16, 40
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			c := httpClient(t)
			for i := range each {
				switch (w + i) % 4 {
				case 0:
					post(t, c, base+"/v1/chat/completions", oaOK, oaHeaders...)
				case 1:
					post(t, c, base+"/v1/chat/completions", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"s t"}]}`, oaHeaders...)
				case 2:
					post(t, c, base+"/v1/messages", anOK, anHeaders...)
				case 3:
					post(t, c, base+"/v1/messages", `{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"s t"}]}`, anHeaders...)
				}
			}
		})
	}
	// Rules come and go while the traffic flows; each one is used at most
	// once, and only by a request that counts it.
	wg.Go(func() {
		for range 50 {
			_ = s.AddFault(mock.Rule{Fault: mock.FaultServerError, Count: 1})
			_ = s.Faults()
			_ = s.Stats()
			_ = s.Log()
		}
	})
	wg.Wait()
	st := s.Stats()
	total := st.Requests("openai") + st.Requests("anthropic")
	faulted := st.Outcome("openai", mock.FaultServerError) + st.Outcome("anthropic", mock.FaultServerError)
	ok := st.Outcome("openai", mock.OutcomeOK) + st.Outcome("anthropic", mock.OutcomeOK)
	if total != workers*each || ok+faulted != total {
		t.Errorf("requests %d (want %d), ok %d + faulted %d", total, workers*each, ok, faulted)
	}
	if left := int64(len(s.Faults())); faulted+left != 50 {
		t.Errorf("faulted %d + rules left %d, want the 50 rules added", faulted, left)
	}
}

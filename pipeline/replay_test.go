package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/llm-gateway/gateway/fsm"
)

func replayString(t *testing.T, log string, opts ReplayOptions) *ReplayReport {
	t.Helper()
	rep, err := Replay(strings.NewReader(log), opts)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	return rep
}

func replayFixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "replay", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// genTraffic runs the traffic simulation into a log of the given format.
func genTraffic(t testing.TB, format string, cfg simConfig) (string, genTally) {
	t.Helper()
	var buf bytes.Buffer
	g := newLogGen(&buf, format)
	g.start()
	g.simulate(cfg)
	g.close()
	return buf.String(), g.tally
}

func TestReplayGeneratedTrafficReplaysCleanlyInBothFormats(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			log, want := genTraffic(t, format, simConfig{Requests: 8000, Concurrency: 8, Seed: 7, RestartEvery: 5000, UnrelatedEvery: 700})
			rep := replayString(t, log, ReplayOptions{})
			if err := rep.Err(); err != nil {
				t.Fatal(err)
			}
			if rep.WarningCount != 0 {
				t.Errorf("warnings: %v", rep.Warnings)
			}
			req := rep.Requests
			if req.Received != want.received || req.Succeeded != want.succeeded || req.Failed != want.failed ||
				req.Rejected != want.rejected || req.Unfinished != 0 || req.Partial != 0 {
				t.Errorf("requests %+v; generator received %d, succeeded %d, failed %d, rejected %d",
					req, want.received, want.succeeded, want.failed, want.rejected)
			}
			if !maps.Equal(req.ByStatus, want.byStatus) {
				t.Errorf("failed by status %v, want %v", req.ByStatus, want.byStatus)
			}
			for n, c := range want.attempts {
				if got := req.Attempts[min(n, MaxAttemptsBucket)]; got != c {
					t.Errorf("%d attempts: %d requests, want %d", n, got, c)
				}
			}
			if rep.Restarts != want.restarts || rep.Ignored != want.unrelated {
				t.Errorf("restarts %d ignored %d; want %d and %d", rep.Restarts, rep.Ignored, want.restarts, want.unrelated)
			}
			if rep.Latency.Count != want.received || rep.Latency.P50 <= 0 || rep.Latency.P99 < rep.Latency.P50 {
				t.Errorf("latency %+v, want %d requests", rep.Latency, want.received)
			}
			for _, p := range []string{"openai", "anthropic"} {
				ps := rep.Providers[p]
				if ps == nil {
					t.Fatalf("no summary for %s", p)
				}
				got := [7]int64{ps.Trips, ps.Probes, ps.Recovers, ps.Reopens, ps.FailoversOut, ps.FailoversIn, ps.Skipped}
				wantP := [7]int64{want.trips[p], want.probes[p], want.recovers[p], want.reopens[p], want.failoversOut[p], want.failoversIn[p], want.skipped[p]}
				if got != wantP {
					t.Errorf("%s: trips/probes/recovers/reopens/out/in/skipped %v, want %v", p, got, wantP)
				}
			}
			o, a := rep.Providers["openai"], rep.Providers["anthropic"]
			if o.Trips+a.Trips == 0 || o.Reopens+a.Reopens == 0 || o.Recovers+a.Recovers == 0 || o.Skipped+a.Skipped == 0 {
				t.Errorf("the simulation should trip, reopen and recover breakers and skip targets: %+v %+v", *o, *a)
			}
		})
	}
}

// replayStepLine is a journey step in a form a test can spell out.
func replayStepLine(s JourneyStep) string {
	out := fmt.Sprintf("%d +%s %s", s.Line, s.Offset, s.Action)
	if s.Event != "" {
		out += fmt.Sprintf(" %s %s→%s", s.Event, s.From, s.To)
	}
	if s.Provider != "" {
		out += " " + s.Provider
	}
	if s.Attempt != 0 {
		out += fmt.Sprintf(" #%d", s.Attempt)
	}
	for _, kv := range []struct {
		k string
		v any
		z any
	}{{"error", s.Error, ""}, {"wait", s.Wait, time.Duration(0)}, {"status", s.Status, 0}, {"upstream", s.UpstreamStatus, 0},
		{"retry_after", s.RetryAfter, time.Duration(0)}, {"probe_in", s.ProbeIn, time.Duration(0)}, {"reason", s.Reason, ""}} {
		if kv.v != kv.z {
			out += fmt.Sprintf(" %s=%v", kv.k, kv.v)
		}
	}
	return out
}

func replayJourneyLines(j *Journey) []string {
	var out []string
	for _, s := range j.Steps {
		out = append(out, replayStepLine(s))
	}
	return append(out, fmt.Sprintf("= %q %d in %s after %d", j.Outcome, j.Status, j.Latency, j.Attempts))
}

// The scripted journeys (one of each kind: happy, retry, failover on a rate
// limit, breaker trip / open / probe / recover / reopen, rejected, refused
// by the provider, exhausted, a reused ID) written by the live Journal replay
// cleanly in both formats, to the same journeys.
func TestReplayScriptedJourneysReplayCleanlyInBothFormats(t *testing.T) {
	var reports []*ReplayReport
	for _, format := range []string{"text", "json"} {
		rep := replayString(t, scriptedLog(format), ReplayOptions{Journeys: true})
		if err := rep.Err(); err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if rep.WarningCount != 0 {
			t.Fatalf("%s: warnings %v", format, rep.Warnings)
		}
		reports = append(reports, rep)
	}
	text, js := reports[0], reports[1]
	js.Bytes = text.Bytes
	if !reflect.DeepEqual(text, js) {
		t.Errorf("the text and JSON logs replay differently:\ntext %+v\njson %+v", text, js)
	}

	byID := map[string][]*Journey{}
	for _, j := range text.Journeys {
		byID[j.RequestID] = append(byID[j.RequestID], j)
	}
	want := map[string][]string{
		"req_happy": {
			"2 +0s received",
			"3 +200µs validated validate received→validated",
			"4 +500µs attempt attempt validated→attempting openai #1",
			"8 +151ms success succeed attempting→succeeded openai #1 status=200",
			`= "succeeded" 200 in 151ms after 1`,
		},
		"req_failover": {
			"13 +0s received",
			"14 +0s validated validate received→validated",
			"15 +300µs attempt attempt validated→attempting openai #1",
			"16 +80ms failed openai #1 error=rate_limited upstream=429 retry_after=1s",
			"17 +80ms failover failover attempting→failover anthropic error=rate_limited reason=rate_limited",
			"18 +80ms attempt attempt failover→attempting anthropic #2",
			"19 +410ms success succeed attempting→succeeded anthropic #2 status=200",
			`= "succeeded" 200 in 410ms after 2`,
		},
		"req_open": {
			"28 +0s received",
			"29 +0s validated validate received→validated",
			"30 +0s skipped openai probe_in=26.04s reason=breaker_open",
			"31 +0s failover failover validated→failover anthropic reason=breaker_open",
			"32 +0s attempt attempt failover→attempting anthropic #1",
			"33 +290ms success succeed attempting→succeeded anthropic #1 status=200",
			`= "succeeded" 200 in 290ms after 1`,
		},
		"req_rejected": {
			"40 +0s received",
			"41 +0s rejected reject received→failed status=400 reason=invalid",
			`= "failed" 400 in 0s after 0`,
		},
	}
	for id, lines := range want {
		if len(byID[id]) != 1 {
			t.Fatalf("%s: %d journeys", id, len(byID[id]))
		}
		if got := replayJourneyLines(byID[id][0]); !slices.Equal(got, lines) {
			t.Errorf("%s journey:\n%s\nwant\n%s", id, strings.Join(got, "\n"), strings.Join(lines, "\n"))
		}
	}
	if got := byID["req_retry"]; len(got) != 2 || got[0].Line != 5 || got[1].Line != 80 || got[0].Attempts != 2 || got[1].Attempts != 1 {
		t.Errorf("req_retry was used for two journeys (lines 5 and 80); got %+v", got)
	}

	r := text.Requests
	if r.Received != 12 || r.Succeeded != 9 || r.Failed != 3 || r.Rejected != 1 || r.Unfinished != 0 {
		t.Errorf("requests %+v", r)
	}
	if !maps.Equal(r.ByStatus, map[int]int64{400: 2, 502: 1}) {
		t.Errorf("failed by status %v", r.ByStatus)
	}
	if !slices.Equal(r.Attempts, []int64{1, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0}) {
		t.Errorf("attempts %v", r.Attempts)
	}
	wantOpenAI := ProviderSummary{Attempts: 11, Successes: 3, Retries: 3, FailoversOut: 6, Skipped: 1, Trips: 2, Probes: 2, Recovers: 1, Reopens: 1,
		Failures: map[string]int64{"rate_limited": 1, "server": 5, "timeout": 2}}
	if !reflect.DeepEqual(*text.Providers["openai"], wantOpenAI) {
		t.Errorf("openai %+v\nwant   %+v", *text.Providers["openai"], wantOpenAI)
	}
	if text.Restarts != 2 || text.Ignored != 1 || text.Lines != 83 || text.JournalLine != 82 || text.Transitions != 57 {
		t.Errorf("lines %d journal %d transitions %d ignored %d restarts %d", text.Lines, text.JournalLine, text.Transitions, text.Ignored, text.Restarts)
	}
}

// The committed fixtures are the scripted journeys as the journal wrote
// them, and hand-corrupted copies. Each corruption is reported at its line.
func TestReplayReportsEachCorruptionAtItsLine(t *testing.T) {
	type want struct {
		line   int64
		kind   ProblemKind
		id     string
		reason string // a part of the reason
	}
	allow := ReplayOptions{AllowIncomplete: true}
	cases := []struct {
		file     string
		opts     ReplayOptions
		problems []want
		warnings []want
		ignored  int64 // 0 means 1: every fixture has one line that is not the journal's
	}{
		{file: "clean.log"},
		{file: "clean.jsonl"},
		{file: "illegal_event.log", problems: []want{
			{10, ProblemIllegalEvent, "req_retry", `unknown event "recover" for the request machine`},
			{41, ProblemIllegalEvent, "req_rejected", `event "succeed" is not allowed in state "received"`},
		}},
		{file: "illegal_event.jsonl", problems: []want{{10, ProblemIllegalEvent, "req_retry", `unknown event "recover"`}}},
		{file: "swapped_lines.log", problems: []want{
			{6, ProblemIllegalEvent, "req_retry", `event "attempt" is not allowed in state "received"; logged from=validated but the replayed machine is in received`},
			{7, ProblemFromMismatch, "req_retry", "this line belongs before line 6 (the two are swapped)"},
		}},
		{file: "swapped_lines.jsonl", problems: []want{
			{6, ProblemIllegalEvent, "req_retry", `event "attempt" is not allowed`},
			{7, ProblemFromMismatch, "req_retry", "belongs before line 6"},
		}},
		{file: "unfinished.log", problems: []want{{82, ProblemUnfinished, "req_retry", "the log ends with it in state attempting (received at line 80, last line 82)"}}},
		{file: "unfinished.log", opts: allow, warnings: []want{{82, ProblemUnfinished, "req_retry", "the log ends"}}},
		{file: "restart_unfinished.log", problems: []want{{37, ProblemUnfinished, "req_probe", "the orchestrator restarted at line 61 with it in state attempting"}}},
		{file: "restart_unfinished.log", opts: allow, warnings: []want{{37, ProblemUnfinished, "req_probe", "restarted at line 61"}}},
		{file: "truncated_last.log", warnings: []want{{84, WarningTruncated, "", "cut short"}}, ignored: 2},
		{file: "no_final_newline.log", warnings: []want{{83, WarningTruncated, "", "no newline; it parses whole and is replayed"}}},
		{file: "truncated_terminal.log",
			problems: []want{{82, ProblemUnfinished, "req_retry", "the log ends"}},
			warnings: []want{{83, WarningTruncated, "", "cut short"}}, ignored: 2},
		{file: "truncated_terminal.jsonl",
			problems: []want{{82, ProblemUnfinished, "req_retry", "the log ends"}},
			warnings: []want{{83, WarningTruncated, "", "cut short"}}, ignored: 2},
		{file: "truncated_terminal.log", opts: allow, warnings: []want{
			{83, WarningTruncated, "", "cut short"}, {82, ProblemUnfinished, "req_retry", "the log ends"}}, ignored: 2},
		{file: "garbage.log", ignored: 10},
		{file: "after_terminal.log", problems: []want{
			{84, ProblemAfterTerminal, "req_happy", "event succeed logged after the request's terminal transition at line 8"},
			{85, ProblemAfterTerminal, "req_happy", "action=failed logged after the request's terminal transition at line 8"},
		}},
		{file: "from_mismatch.log", problems: []want{{11, ProblemFromMismatch, "req_retry", "logged from=failover but the replayed machine is in backoff"}}},
		{file: "to_mismatch.log", problems: []want{{19, ProblemToMismatch, "req_failover", "logged to=failed but the table takes attempting --succeed--> succeeded"}}},
		{file: "duplicate_received.log", problems: []want{{12, ProblemDuplicateReceived, "req_retry", "received again while its journey from line 5 is unfinished (in state attempting)"}}},
		{file: "duplicate_received.log", opts: allow, problems: []want{{12, ProblemDuplicateReceived, "req_retry", "unfinished"}}},
		{file: "spliced.log", opts: allow, warnings: []want{
			{66, WarningSpliced, "", "the cut part is dropped"},
			{65, ProblemUnfinished, "req_reopen", "restarted at line 66"}}},
		{file: "malformed.log", problems: []want{
			{21, ProblemMalformed, "", `unknown machine "toaster"`},
			{22, ProblemMalformed, "", "action=attempt is a transition, but the line has no machine, event, from and to"},
		}},
		{file: "action_mismatch.log", problems: []want{{3, ProblemActionMismatch, "req_happy", "action=attempt does not match event=validate (want action=validated)"}}},
		{file: "breaker_illegal.log", problems: []want{{25, ProblemIllegalEvent, "openai", `event "trip" is not allowed in state "open"; logged from=closed`}}},
		{file: "no_received.log", problems: []want{{2, ProblemNoReceived, "req_happy", "received line is not in the log"}}},
		{file: "no_received.log", opts: allow, warnings: []want{{2, ProblemNoReceived, "req_happy", "received line is not in the log"}}},
	}
	for _, c := range cases {
		name := c.file
		if c.opts.AllowIncomplete {
			name += "/allow-incomplete"
		}
		t.Run(name, func(t *testing.T) {
			log := replayFixture(t, c.file)
			rep := replayString(t, log, c.opts)
			lines := strings.Split(log, "\n")
			check := func(what string, got []Problem, count int64, want []want) {
				if int(count) != len(want) || len(got) != len(want) {
					t.Errorf("%d %s, want %d: %v", count, what, len(want), got)
					return
				}
				for i, w := range want {
					g := got[i]
					if g.Line != w.line || g.Kind != w.kind || g.ID != w.id || !strings.Contains(g.Reason, w.reason) {
						t.Errorf("%s %d: %s\nwant line %d: %s: %s: …%s…", what, i, g, w.line, w.kind, w.id, w.reason)
					}
					// A problem with a line names it: its text, cut to 200 bytes.
					if g.Kind != ProblemUnfinished && g.Text != truncate(lines[g.Line-1], 200) {
						t.Errorf("%s %d: text %q, want line %d %q", what, i, g.Text, g.Line, lines[g.Line-1])
					}
				}
			}
			check("problems", rep.Problems, rep.ProblemCount, c.problems)
			check("warnings", rep.Warnings, rep.WarningCount, c.warnings)
			if (rep.Err() == nil) != (len(c.problems) == 0) {
				t.Errorf("Err() = %v with %d problems", rep.Err(), len(c.problems))
			}
			if c.ignored == 0 {
				c.ignored = 1
			}
			if rep.Ignored != c.ignored {
				t.Errorf("%d lines ignored, want %d: %v", rep.Ignored, c.ignored, rep.IgnoredSamples)
			}
			if rep.JournalLine+rep.Ignored != rep.Lines {
				t.Errorf("%d journal + %d ignored != %d lines", rep.JournalLine, rep.Ignored, rep.Lines)
			}
		})
	}
}

// A problem request's journey is kept whole, with its problems, so that it
// can be shown; a clean one is not kept unless asked for.
func TestReplayKeepsTheJourneysOfProblemRequests(t *testing.T) {
	rep := replayString(t, replayFixture(t, "swapped_lines.log"), ReplayOptions{})
	if len(rep.Journeys) != 1 {
		t.Fatalf("%d journeys kept, want req_retry's only", len(rep.Journeys))
	}
	j := rep.Journeys[0]
	if j.RequestID != "req_retry" || len(j.Problems) != 2 || j.Outcome != fsm.Succeeded || len(j.Steps) != 7 {
		t.Errorf("journey %+v", j)
	}
	rep = replayString(t, replayFixture(t, "swapped_lines.log"), ReplayOptions{MaxProblemJourneys: -1})
	if len(rep.Journeys) != 0 {
		t.Errorf("MaxProblemJourneys -1 kept %d journeys", len(rep.Journeys))
	}
}

func TestReplayRequestIDKeepsEveryJourneyOfThatID(t *testing.T) {
	var got []*Journey
	rep := replayString(t, replayFixture(t, "clean.log"), ReplayOptions{RequestID: "req_retry", OnJourney: func(j *Journey) { got = append(got, j) }})
	if len(rep.Journeys) != 0 {
		t.Errorf("with OnJourney the report keeps no journey, got %d", len(rep.Journeys))
	}
	if len(got) != 2 || got[0].Line != 5 || got[1].Line != 80 {
		t.Fatalf("journeys %+v", got)
	}
	if got[0].Start != genEpoch.Add(5*time.Millisecond) || got[0].Latency != 3199*time.Millisecond {
		t.Errorf("first journey starts %s, lasts %s", got[0].Start, got[0].Latency)
	}
}

func TestReplayRestartResetsBreakersToClosed(t *testing.T) {
	trip := `WARN  provider=openai action=trip error=server reason="5 consecutive failures" machine=breaker event=trip from=closed to=open ts=2026-11-26T00:12:06.163456Z` + "\n"
	start := `INFO  action=start listen=127.0.0.1:8080 ts=2026-11-26T00:12:07.000000Z` + "\n"
	if err := replayString(t, start+trip+start+trip, ReplayOptions{}).Err(); err != nil {
		t.Errorf("a trip after a restart is legal: %v", err)
	}
	rep := replayString(t, start+trip+trip, ReplayOptions{})
	if rep.ProblemCount != 1 || rep.Problems[0].Line != 3 || rep.Problems[0].Kind != ProblemIllegalEvent {
		t.Errorf("a second trip without a restart: %v", rep.Problems)
	}
}

// A log that begins mid-run may find a breaker open: with AllowIncomplete,
// its first line is believed (until the first start line).
func TestReplayAllowIncompleteTrustsABreakersFirstLineBeforeAnyStart(t *testing.T) {
	probe := `INFO  provider=openai action=probe machine=breaker event=probe from=open to=half_open ts=2026-11-26T00:12:37.123456Z` + "\n" +
		`INFO  provider=openai action=recover machine=breaker event=recover from=half_open to=closed ts=2026-11-26T00:12:37.243456Z` + "\n"
	if rep := replayString(t, probe, ReplayOptions{}); rep.ProblemCount != 1 || rep.Problems[0].Line != 1 {
		t.Errorf("without AllowIncomplete a breaker starts closed: %v", rep.Problems)
	}
	if err := replayString(t, probe, ReplayOptions{AllowIncomplete: true}).Err(); err != nil {
		t.Errorf("with AllowIncomplete: %v", err)
	}
	start := `INFO  action=start ts=2026-11-26T00:12:00.000000Z` + "\n"
	if rep := replayString(t, start+probe, ReplayOptions{AllowIncomplete: true}); rep.ProblemCount != 1 {
		t.Errorf("after a start line every breaker is closed: %v", rep.Problems)
	}
}

// A transition line that lacks what replay needs is named, and replay goes
// on: the line is as good as missing.
func TestReplayNamesATransitionWithoutItsFields(t *testing.T) {
	log := `INFO  request_id=r1 action=received ts=2026-11-26T00:12:00.000000Z
INFO  request_id=r1 action=validated machine=request event=validate from=received ts=2026-11-26T00:12:00.000001Z
INFO  action=attempt machine=request event=attempt from=validated to=attempting ts=2026-11-26T00:12:00.000002Z
`
	rep := replayString(t, log, ReplayOptions{AllowIncomplete: true})
	if rep.ProblemCount != 2 || !strings.Contains(rep.Problems[0].Reason, "without [to]") || !strings.Contains(rep.Problems[1].Reason, "without [request_id]") {
		t.Errorf("problems %v", rep.Problems)
	}
}

func TestReplayParsesEitherFormatInAnyFieldOrder(t *testing.T) {
	cases := []string{
		`INFO  ts=2026-11-26T00:12:00.5Z to=backoff from=attempting event=retry machine=request wait=1m2.5s error=timeout attempt=3 provider="open ai" action=backoff request_id=req_1 reason="say \"hi\" = ok"`,
		`WARN request_id=req_1 action=backoff provider="open ai" attempt=3 error=timeout wait=1m2.5s machine=request event=retry from=attempting to=backoff reason="say \"hi\" = ok" ts=2026-11-26T00:12:00.500000Z` + "\r",
		`{"level":"INFO","request_id":"req_1","action":"backoff","provider":"open ai","attempt":3,"error":"timeout","wait":"1m2.5s","machine":"request","event":"retry","from":"attempting","to":"backoff","reason":"say \"hi\" = ok","ts":"2026-11-26T00:12:00.5Z"}`,
		` { "nested" : {"a":[1,2,{"b":"}"}]}, "ts":"2026-11-26T00:12:00.500000000Z" ,"request_id" : "req_1","action":"backoff","provider":"open\u0020ai","attempt":3,"error":"timeout","wait":"1m2.5s","machine":"request","event":"retry","from":"attempting","to":"backoff","reason":"say \"hi\" = ok","extra":null,"n":-1.5e3 } `,
	}
	for i, line := range cases {
		var r logRecord
		if !parseLine([]byte(strings.TrimLeft(line, " ")), &r) {
			t.Errorf("case %d does not parse", i)
			continue
		}
		got := fmt.Sprintf("%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s", r.requestID, r.action, r.provider, r.attempt, r.errClass, r.wait, r.machine, r.event, r.from, r.to, r.reason)
		if want := `req_1|backoff|open ai|3|timeout|1m2.5s|request|retry|attempting|backoff|say "hi" = ok`; got != want {
			t.Errorf("case %d: %s\nwant    %s", i, got, want)
		}
		if ts, ok := parseTimestamp(r.ts); !ok || ts != time.Date(2026, 11, 26, 0, 12, 0, 5e8, time.UTC).UnixNano() {
			t.Errorf("case %d: ts %q → %d, %v", i, r.ts, ts, ok)
		}
	}
	for _, bad := range []string{
		"", "INFO", "INFO  ", "hello world", "INFO  starting up", `INFO  a="unterminated`, `INFO  a=b"c`, `INFO  a="b"c`,
		"INFORMATION a=b", "info a=b", `{"a":1`, `{"a":}`, `{"a" 1}`, `{"a":1}}`, `{"a":tru}`, `{a:1}`, `{"a":"b",}`,
		"\x00\xff", `{"a":[1,2}`,
	} {
		var r logRecord
		if parseLine([]byte(bad), &r) && len(r.action) > 0 {
			t.Errorf("%q parses as a journal line", bad)
		}
	}
}

func TestReplayDurationParserReadsWhatDurationStringWrites(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	values := []time.Duration{0, 1, 999, time.Microsecond, 1500 * time.Microsecond, time.Second, 90 * time.Second, 26040 * time.Millisecond, 3*time.Hour + 7*time.Nanosecond, -2 * time.Second}
	for i := 0; i < 2000; i++ {
		values = append(values, time.Duration(rng.Int63n(int64(48*time.Hour))>>rng.Intn(40)))
	}
	for _, d := range values {
		d = d.Round(time.Microsecond) // what the journal writes
		got, ok := parseDuration([]byte(d.String()))
		if !ok || got != d {
			t.Errorf("%q → %v, %v", d.String(), got, ok)
		}
	}
	for _, bad := range []string{"", "s", "1", "1x", "1.2.3s", "--1s", "1s2"} {
		if _, ok := parseDuration([]byte(bad)); ok {
			t.Errorf("%q parses", bad)
		}
	}
}

func TestReplayTimestampParserAgreesWithTimeParse(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for i := 0; i < 2000; i++ {
		ts := time.Unix(rng.Int63n(1<<34), rng.Int63n(1e9)).UTC()
		for _, layout := range []string{"2006-01-02T15:04:05.000000Z07:00", time.RFC3339Nano, time.RFC3339} {
			s := ts.Format(layout)
			want, _ := time.Parse(time.RFC3339Nano, s)
			if got, ok := parseTimestamp([]byte(s)); !ok || got != want.UnixNano() {
				t.Fatalf("%s → %d, %v; want %d", s, got, ok, want.UnixNano())
			}
		}
	}
	if got, ok := parseTimestamp([]byte("2026-11-26T01:12:00.5+01:00")); !ok || got != time.Date(2026, 11, 26, 0, 12, 0, 5e8, time.UTC).UnixNano() {
		t.Errorf("an offset timestamp: %d, %v", got, ok)
	}
	for _, bad := range []string{"", "2026-11-26", "2026-13-26T00:12:00Z", "2026-11-26T00:12:00.Z", "yesterday at noon, roughly"} {
		if _, ok := parseTimestamp([]byte(bad)); ok {
			t.Errorf("%q parses", bad)
		}
	}
}

func TestReplayLatencyQuantilesAreWithinOnePercent(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	var h latencyHistogram
	var all []time.Duration
	for i := 0; i < 100000; i++ {
		// A long-tailed mix: most requests fast, some waiting out backoffs.
		d := time.Duration(rng.ExpFloat64() * float64(200*time.Millisecond))
		if rng.Intn(20) == 0 {
			d += time.Duration(rng.Intn(30)) * time.Second
		}
		h.add(d)
		all = append(all, d)
	}
	slices.Sort(all)
	s := h.summary()
	for _, q := range []struct {
		got time.Duration
		p   float64
	}{{s.P50, 0.50}, {s.P90, 0.90}, {s.P99, 0.99}} {
		exact := all[int(q.p*float64(len(all)))-1]
		if diff := float64(q.got-exact) / float64(exact); diff > 0.01 || diff < -0.01 {
			t.Errorf("p%v = %s, exact %s (%.2f%%)", q.p*100, q.got, exact, diff*100)
		}
	}
	if s.Max != all[len(all)-1] || s.Min != all[0] || s.Count != int64(len(all)) {
		t.Errorf("summary %+v", s)
	}
}

// Memory is bounded by the requests open at once: a journey's state goes at
// its end, and steady-state replay allocates next to nothing per line.
func TestReplayMemoryIsBoundedByOpenRequests(t *testing.T) {
	log, _ := genTraffic(t, "text", simConfig{Requests: 4000, Concurrency: 32, Seed: 9})
	rp := newReplayer(ReplayOptions{})
	if err := rp.read(strings.NewReader(log)); err != nil {
		t.Fatal(err)
	}
	if len(rp.open) != 0 || len(rp.free) > 64 {
		t.Errorf("%d journeys still open, %d kept for reuse after the log ended", len(rp.open), len(rp.free))
	}
	rp.finish()
	if err := rp.rep.Err(); err != nil {
		t.Fatal(err)
	}
	lines := float64(rp.rep.Lines)
	allocs := testing.AllocsPerRun(3, func() {
		if _, err := Replay(strings.NewReader(log), ReplayOptions{}); err != nil {
			t.Fatal(err)
		}
	})
	// One string per request ID is the floor (≈1 per 8 lines).
	if perLine := allocs / lines; perLine > 0.3 {
		t.Errorf("%.2f allocations per line (%v for %v lines)", perLine, allocs, lines)
	}
}

func TestReplayFinishedWindowForgetsOldRequests(t *testing.T) {
	f := newFinishedRing(4)
	for i := range 10 {
		f.add(fmt.Sprint("r", i), int64(i))
	}
	if len(f.lines) != 4 || len(f.ring) != 4 {
		t.Fatalf("window holds %d ids, ring %d", len(f.lines), len(f.ring))
	}
	if _, ok := f.get([]byte("r5")); ok {
		t.Error("r5 should have left the window")
	}
	if line, ok := f.get([]byte("r9")); !ok || line != 9 {
		t.Errorf("r9: %d, %v", line, ok)
	}
	// An ID that ends twice stays as long as its latest end.
	f.add("r6", 20)
	f.add("x", 21)
	f.add("y", 22)
	if _, ok := f.get([]byte("r6")); !ok {
		t.Error("r6 ended again and should still be remembered")
	}
}

func TestReplaySkipsLinesLongerThanItReads(t *testing.T) {
	clean := replayFixture(t, "clean.log")
	i := strings.Index(clean, "\n") + 1
	log := clean[:i] + strings.Repeat("x", maxLine+300<<10) + "\n" + clean[i:]
	rep := replayString(t, log, ReplayOptions{})
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	if rep.Lines != 84 || rep.Ignored != 2 || rep.IgnoredSamples[0].Line != 2 {
		t.Errorf("lines %d ignored %d %v", rep.Lines, rep.Ignored, rep.IgnoredSamples)
	}
	// A long line that is still under the limit is read whole.
	long := strings.Replace(clean, "message=overloaded", "message="+strings.Repeat("o", 400<<10), 1)
	if rep := replayString(t, long, ReplayOptions{}); rep.Err() != nil || rep.Ignored != 1 {
		t.Errorf("a 400 KB line: %v, %d ignored", rep.Err(), rep.Ignored)
	}
}

func TestReplayBoundsTheProblemsItKeeps(t *testing.T) {
	var b strings.Builder
	for i := range 50 {
		fmt.Fprintf(&b, "INFO  request_id=r%d action=validated machine=request event=validate from=received to=validated ts=2026-11-26T00:12:00.000000Z\n", i)
	}
	rep := replayString(t, b.String(), ReplayOptions{MaxProblems: 5, MaxProblemJourneys: 3})
	// 50 lines without their received, 50 journeys unfinished.
	if rep.ProblemCount != 100 || len(rep.Problems) != 5 || len(rep.Journeys) != 3 {
		t.Errorf("%d problems, %d kept, %d journeys", rep.ProblemCount, len(rep.Problems), len(rep.Journeys))
	}
	if err := rep.Err(); err == nil || !strings.Contains(err.Error(), "and 95 more") {
		t.Errorf("Err: %v", err)
	}
}

type replayFailingReader struct{ n int }

func (r *replayFailingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errors.New("disk on fire")
	}
	r.n--
	return copy(p, "INFO  action=start ts=2026-11-26T00:12:00.000000Z\n"), nil
}

func TestReplayReturnsReadErrors(t *testing.T) {
	rep, err := Replay(&replayFailingReader{n: 3}, ReplayOptions{})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") || rep == nil || rep.Restarts != 3 {
		t.Errorf("err %v, report %+v", err, rep)
	}
	if rep, err := Replay(io.MultiReader(), ReplayOptions{}); err != nil || rep.Lines != 0 || rep.Err() != nil {
		t.Errorf("an empty log: %v %+v", err, rep)
	}
}

// The model name in a received line is the client's, as sent: whatever it
// holds, the journal quotes it and replay reads it back. (In JSON lines the
// journal uses Go quoting, whose \x and \U escapes JSON does not know.)
func TestReplayReadsBackAnyModelName(t *testing.T) {
	models := []string{"gpt-4", "", "a b", `say "hi"`, "k=v", "tab\there", "new\nline", "nul\x00", "ctl\x01\x7f", "bad utf8 \xff\xfe",
		"emoji 😀 and é", `back\slash`, "😀\U0010FFFF", strings.Repeat("long ", 100000)}
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		g := newLogGen(&buf, format)
		for i, m := range models {
			d := g.receive(fmt.Sprintf("req_%d", i), m)
			d.reject(400, "invalid")
		}
		g.close()
		var got []string
		rep := replayString(t, buf.String(), ReplayOptions{Journeys: true, OnJourney: func(j *Journey) { got = append(got, j.Model) }})
		if err := rep.Err(); err != nil || rep.Ignored != 0 {
			t.Fatalf("%s: %v, %d ignored", format, err, rep.Ignored)
		}
		for i, m := range models {
			m = truncate(m, 200) // the journal caps what it logs of a model name
			// Invalid UTF-8 comes back replaced, per run (text) or per byte (JSON).
			if want := strings.ToValidUTF8(m, "\uFFFD"); got[i] != m && got[i] != want && got[i] != string([]rune(m)) {
				t.Errorf("%s: model %.80q read back as %.80q", format, m, got[i])
			}
		}
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func replayFixture(name string) string {
	return filepath.Join("..", "..", "pipeline", "testdata", "replay", name)
}

func runReplay(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"replay"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestReplayCommandExitStatus(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		want []string // in stdout
	}{
		{"clean", []string{replayFixture("clean.log")}, 0, []string{
			"82 journal (57 transitions), 1 ignored, 2 restart(s)",
			"12 received: 9 succeeded, 3 failed, 0 unfinished",
			"400 ×2  502 ×1  (1 rejected before any attempt)",
			"0: 1  1: 5  2: 5  4: 1",
			"latency     p50 ",
			"openai     11        3   rate_limited 1, server 5, timeout 2  3        6/0              1        2/2/1/1",
			"replay: OK"}},
		{"clean json log", []string{replayFixture("clean.jsonl")}, 0, []string{"replay: OK"}},
		{"flags after the file", []string{replayFixture("unfinished.log"), "--allow-incomplete"}, 0, []string{"warnings: 1", "unfinished  req_retry", "replay: OK"}},
		{"a warning is not fatal", []string{replayFixture("truncated_last.log")}, 0, []string{"warnings: 1", "line 84: truncated_line", "replay: OK"}},
		{"illegal", []string{replayFixture("swapped_lines.log")}, 1, []string{
			"problems: 2",
			`line 6: illegal_event: request req_retry: event "attempt" is not allowed in state "received"`,
			"      INFO  request_id=req_retry action=attempt provider=openai",
			"line 7: from_mismatch: request req_retry: out of order: this line belongs before line 6",
			"journeys of problem requests (the first 1):",
			"journey req_retry  (line 5, 2026-11-26T00:12:00.128456Z, model gpt-4o)",
			"  ! line 7: from_mismatch",
			"replay: FAILED with 2 problem(s)"}},
		{"unfinished", []string{replayFixture("unfinished.log")}, 1, []string{"line 82: unfinished: request req_retry: never finished", "  = unfinished after 1 attempt(s)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := runReplay(t, c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d\n%s%s", code, c.code, out, errs)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestReplayCommandUsageErrorsExitTwo(t *testing.T) {
	for name, args := range map[string][]string{
		"no file":      {},
		"two files":    {replayFixture("clean.log"), replayFixture("clean.jsonl")},
		"unknown flag": {"--frobnicate", replayFixture("clean.log")},
		"missing file": {filepath.Join(t.TempDir(), "nope.log")},
		"a directory":  {t.TempDir()},
	} {
		t.Run(name, func(t *testing.T) {
			if code, out, errs := runReplay(t, args...); code != 2 || errs == "" {
				t.Errorf("exit %d, stderr %q, stdout %q", code, errs, out)
			}
		})
	}
}

func TestReplayCommandPrintsEveryJourneyOfARequest(t *testing.T) {
	code, out, _ := runReplay(t, "--request-id", "req_retry", replayFixture("clean.log"))
	if code != 0 || strings.Count(out, "journey req_retry ") != 2 || strings.Contains(out, "journey req_happy") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, w := range []string{
		"     9      +1s  failed     #1 openai: timeout after 1s",
		"    10      +1s  backoff    wait 2s after timeout  [attempting → backoff]",
		"  = succeeded 200 in 3.199s after 2 attempt(s)",
		"    82     +0s  attempt    #1 anthropic (claude-3-5-sonnet-20241022)  [validated → attempting]",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if _, out, _ := runReplay(t, "--request-id", "req_nobody", replayFixture("clean.log")); !strings.Contains(out, "request req_nobody does not appear in the log") {
		t.Errorf("an unknown request: %s", out)
	}
}

func TestReplayCommandQuietPrintsOnlyProblems(t *testing.T) {
	if code, out, _ := runReplay(t, "--quiet", replayFixture("clean.log")); code != 0 || out != "" {
		t.Errorf("clean: exit %d, %q", code, out)
	}
	code, out, _ := runReplay(t, "--quiet", replayFixture("illegal_event.log"))
	if code != 1 || !strings.HasPrefix(out, "\nproblems: 2\n  line 10: illegal_event") || strings.Contains(out, "journey") || strings.Contains(out, "requests") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

func TestReplayCommandJSONIsOneDocument(t *testing.T) {
	for _, args := range [][]string{
		{"--json", replayFixture("clean.log")},
		{"--json", "--journeys", replayFixture("clean.log")},
		{"--json", replayFixture("swapped_lines.log")},
	} {
		code, out, _ := runReplay(t, args...)
		var doc struct {
			Journeys []struct {
				RequestID string `json:"request_id"`
				Steps     []any  `json:"steps"`
			} `json:"journeys"`
			Lines        int64 `json:"lines"`
			ProblemCount int64 `json:"problem_count"`
			Problems     []struct {
				Line int64  `json:"line"`
				Kind string `json:"kind"`
			} `json:"problems"`
			Requests struct {
				Received int64 `json:"received"`
			} `json:"requests"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		if doc.Lines != 83 || doc.Requests.Received != 12 || int64(code) != min(doc.ProblemCount, 1) {
			t.Errorf("%v: exit %d, %+v", args, code, doc)
		}
		switch {
		case args[1] == "--journeys" && len(doc.Journeys) != 12:
			t.Errorf("--journeys: %d journeys, want 12", len(doc.Journeys))
		case strings.Contains(args[1], "swapped") && (len(doc.Journeys) != 1 || len(doc.Problems) != 2 || doc.Problems[1].Line != 7):
			t.Errorf("swapped: %+v", doc)
		}
	}
}

func TestReplayCommandReadsStdin(t *testing.T) {
	b, err := os.ReadFile(replayFixture("clean.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	stdin = bytes.NewReader(b)
	defer func() { stdin = os.Stdin }()
	code, out, _ := runReplay(t, "-")
	if code != 0 || !strings.Contains(out, "replay of stdin: 83 lines") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

func TestReplayCommandHelpExitsZero(t *testing.T) {
	if code, _, errs := runReplay(t, "-h"); code != 0 || !strings.Contains(errs, "--allow-incomplete") && !strings.Contains(errs, "-allow-incomplete") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
}

// A replayed log is anyone's text: a value with an escape sequence or a line
// feed (a client's model name) is printed quoted, never raw.
func TestReplayCommandPrintsNoControlCharacters(t *testing.T) {
	log := `INFO  action=start listen=127.0.0.1:8080 providers="[openai]" ts=2026-11-26T00:12:00.123456Z
INFO  request_id=req_x action=received model="\u001b[2Jevil\nINFO forged" ts=2026-11-26T00:12:00.124456Z
INFO  request_id=req_x action=rejected machine=request event=reject from=received to=failed status=404 reason=model_not_found ts=2026-11-26T00:12:00.124656Z
`
	path := filepath.Join(t.TempDir(), "j.log")
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	_, out, _ := runReplay(t, "--journeys", path)
	if strings.ContainsRune(out, 0x1b) || strings.Contains(out, "\nINFO forged") {
		t.Fatalf("a control character reached the output:\n%q", out)
	}
	if !strings.Contains(out, `model "\x1b[2Jevil\nINFO forged"`) {
		t.Fatalf("the model is not shown quoted:\n%s", out)
	}
}

func TestDocsAndDiagramHelpExitZeroAndStrayArgumentsExitTwo(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"docs", "-h"}, 0},
		{[]string{"diagram", "-h"}, 0},
		{[]string{"docs", "-out", t.TempDir(), "stray"}, 2},
		{[]string{"diagram", "stray"}, 2},
	} {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != tc.code {
			t.Errorf("%v: exit %d, want %d: %s", tc.args, code, tc.code, errb.String())
		}
	}
}

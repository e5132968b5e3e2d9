package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestParseTurnTargetsWantsLoopbackPidsAndTwoTargets(t *testing.T) {
	ts, err := parseTurnTargets("127.0.0.1:1=10, localhost:2=20")
	if err != nil || len(ts) != 2 || ts[1].Addr != "localhost:2" || ts[1].Watch[0] != 20 || ts[0].Expect != 200 {
		t.Fatalf("got %+v, %v", ts, err)
	}
	for _, bad := range []string{"", "127.0.0.1:1=10", "127.0.0.1:1=10,example.com:2=20", "127.0.0.1:1=10,127.0.0.1:2", "127.0.0.1:1=10,127.0.0.1:2=x", "127.0.0.1:1=10,127.0.0.1:2=-1"} {
		if _, err := parseTurnTargets(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Two servers take turns; the report has a line per round and the ratio of
// the second to the first.
func TestTurnsComparesTargetsRoundByRound(t *testing.T) {
	var spec []string
	for range 2 {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("{}")) }))
		defer srv.Close()
		spec = append(spec, srv.Listener.Addr().String()+"="+strconv.Itoa(os.Getpid()))
	}
	var out, errb bytes.Buffer
	code := runTurns([]string{"-targets", strings.Join(spec, ","), "-rounds", "2", "-duration", "50ms", "-warmup", "10ms", "-conns", "2"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	got := out.String()
	if strings.Count(got, "round ") != 2 || !strings.Contains(got, "CPU per request:") {
		t.Fatalf("report:\n%s", got)
	}
	if code := runTurns([]string{"-targets", spec[0]}, &out, &errb); code != 2 {
		t.Fatalf("one target: exit %d, want 2", code)
	}
}

// gwbench load and turns refuse the same out-of-range flags, before any
// traffic.
func TestLoadAndTurnsRefuseOutOfRangeFlags(t *testing.T) {
	targets := "127.0.0.1:1=1,127.0.0.1:2=1"
	for _, bad := range [][]string{{"-conns", "0"}, {"-conns", "1025"}, {"-duration", "0s"}, {"-duration", "11m"}, {"-warmup", "-1s"}} {
		var out, errb bytes.Buffer
		if code := runLoad(append([]string{"-addr", "127.0.0.1:1"}, bad...), &out, &errb); code != 2 || !strings.Contains(errb.String(), "-conns must be") {
			t.Errorf("load %v: exit %d, %q", bad, code, errb.String())
		}
		errb.Reset()
		if code := runTurns(append([]string{"-targets", targets}, bad...), &out, &errb); code != 2 || !strings.Contains(errb.String(), "-conns must be") {
			t.Errorf("turns %v: exit %d, %q", bad, code, errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := runTurns([]string{"-targets", targets, "-rounds", "0"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "-rounds") {
		t.Errorf("turns -rounds 0: exit %d, %q", code, errb.String())
	}
}

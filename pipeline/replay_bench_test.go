package pipeline

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// replayBenchLogs are generated once per format and shared by the benchmarks.
var replayBenchLogs = map[string][]byte{}
var replayBenchMu sync.Mutex

func replayBenchLog(b *testing.B, format string) []byte {
	replayBenchMu.Lock()
	defer replayBenchMu.Unlock()
	if log, ok := replayBenchLogs[format]; ok {
		return log
	}
	log, _ := genTraffic(b, format, simConfig{Requests: 40000, Concurrency: 64, Seed: 11, RestartEvery: 15000, UnrelatedEvery: 1000})
	replayBenchLogs[format] = []byte(log)
	return replayBenchLogs[format]
}

// BenchmarkReplay replays a generated log (≈ 40k requests, 300k lines) per
// iteration; it reports MB/s and lines/s.
func BenchmarkReplay(b *testing.B) {
	for _, format := range []string{"text", "json"} {
		b.Run(format, func(b *testing.B) {
			log := replayBenchLog(b, format)
			lines := bytes.Count(log, []byte{'\n'})
			b.SetBytes(int64(len(log)))
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				rep, err := Replay(bytes.NewReader(log), ReplayOptions{})
				if err != nil || rep.ProblemCount != 0 {
					b.Fatal(err, rep.Err())
				}
			}
			b.ReportMetric(float64(lines)*float64(b.N)/time.Since(start).Seconds(), "lines/s")
		})
	}
}

// BenchmarkReplayParseLine is the parser alone, on one typical line.
func BenchmarkReplayParseLine(b *testing.B) {
	lines := map[string]string{
		"text": `INFO  request_id=req_abc0123456789defghij action=backoff provider=openai attempt=1 error=timeout wait=2s machine=request event=retry from=attempting to=backoff ts=2026-11-26T00:12:01.128856Z`,
		"json": `{"level":"INFO","request_id":"req_abc0123456789defghij","action":"backoff","provider":"openai","attempt":1,"error":"timeout","wait":"2s","machine":"request","event":"retry","from":"attempting","to":"backoff","ts":"2026-11-26T00:12:01.128856Z"}`,
	}
	for _, format := range []string{"text", "json"} {
		b.Run(format, func(b *testing.B) {
			line := []byte(lines[format])
			var r logRecord
			b.SetBytes(int64(len(line)))
			b.ReportAllocs()
			for b.Loop() {
				if !parseLine(line, &r) {
					b.Fatal("does not parse")
				}
			}
		})
	}
}

// TestReplayGenerateLog writes a big generated log for measuring replay from
// the command line; it runs only when asked:
//
//	REPLAY_GEN_LOG=/tmp/big.log REPLAY_GEN_MB=1024 [REPLAY_GEN_FORMAT=json] \
//	  go test -run TestReplayGenerateLog -timeout 30m ./pipeline/
//	/usr/bin/time -v bin/fsmctl replay /tmp/big.log
func TestReplayGenerateLog(t *testing.T) {
	path := os.Getenv("REPLAY_GEN_LOG")
	if path == "" {
		t.Skip("set REPLAY_GEN_LOG (and REPLAY_GEN_MB) to write a big log")
	}
	mb, err := strconv.Atoi(os.Getenv("REPLAY_GEN_MB"))
	if err != nil || mb <= 0 {
		mb = 100
	}
	format := os.Getenv("REPLAY_GEN_FORMAT")
	if format == "" {
		format = "text"
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	g := newLogGen(bw, format)
	cw := g.out.(*genWriter)
	g.start()
	limit := int64(mb) << 20
	g.simulate(simConfig{Concurrency: 256, Seed: 1, RestartEvery: 250000, UnrelatedEvery: 5000,
		TargetBytes: func() bool { return cw.n.Load() >= limit }})
	g.close()
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s: %d MB, %d requests, %d restarts", path, cw.n.Load()>>20, g.tally.received, g.tally.restarts)
}

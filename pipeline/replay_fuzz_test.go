package pipeline

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzReplayParser feeds arbitrary bytes to the line parser and to Replay,
// seeded with the fixtures (whole, and line by line). Neither may panic or
// hang, and every line is counted once: as a journal line or as ignored.
//
//	go test -run '^$' -fuzz FuzzReplayParser -fuzztime 1m ./pipeline/
func FuzzReplayParser(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "replay", "*"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		for _, line := range bytes.SplitAfter(b, []byte{'\n'}) {
			f.Add(line)
		}
	}
	f.Add([]byte(`{"level":"INFO","a":{"b":[1,"]}",{}]},"action":"x"}`))
	f.Add([]byte("INFO  reason=\"\\x41\\u00e9\\U0001F600\" action=start ts=2026-11-26T00:12:00.000000Z\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r logRecord
		parseLine(data, &r)
		spliceStart(data)
		parseDuration(data)
		parseTimestamp(data)

		for _, opts := range []ReplayOptions{{Journeys: true}, {AllowIncomplete: true, MaxProblems: 2, MaxProblemJourneys: 1}} {
			done := make(chan *ReplayReport, 1)
			go func() {
				rep, err := Replay(bytes.NewReader(data), opts)
				if err != nil {
					t.Errorf("Replay of a byte slice: %v", err)
				}
				done <- rep
			}()
			var rep *ReplayReport
			select {
			case rep = <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("Replay hangs on %q", data)
			}
			lines := int64(bytes.Count(data, []byte{'\n'}))
			if len(data) > 0 && data[len(data)-1] != '\n' {
				lines++
			}
			if rep.Lines != lines || rep.JournalLine+rep.Ignored != rep.Lines || rep.Bytes != int64(len(data)) {
				t.Fatalf("%d lines (%d journal, %d ignored), %d bytes; the input has %d lines, %d bytes",
					rep.Lines, rep.JournalLine, rep.Ignored, rep.Bytes, lines, len(data))
			}
			if int64(len(rep.Problems)) > rep.ProblemCount || int64(len(rep.Warnings)) > rep.WarningCount {
				t.Fatalf("more problems kept than counted")
			}
			for _, p := range append(rep.Problems, rep.Warnings...) {
				if p.Line < 1 || p.Line > rep.Lines {
					t.Fatalf("problem at line %d of %d: %s", p.Line, rep.Lines, p)
				}
			}
		}
	})
}

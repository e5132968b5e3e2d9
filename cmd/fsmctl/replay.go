package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/llm-gateway/gateway/pipeline"
)

const replayUsage = `usage: fsmctl replay [flags] FILE|-

Re-drives every request and breaker machine from the orchestrator's log
(text or JSON lines) and checks each transition against the fsm tables.
Exit status: 0 clean, 1 problems found, 2 usage error or unreadable input.

flags:
`

// stdin is what "-" reads; tests replace it.
var stdin io.Reader = os.Stdin

// replay is `fsmctl replay`.
func replay(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, replayUsage)
		fs.PrintDefaults()
	}
	requestID := fs.String("request-id", "", "print every journey of this request `ID`")
	journeys := fs.Bool("journeys", false, "print every journey (long for a big log)")
	allowIncomplete := fs.Bool("allow-incomplete", false, "accept requests that never finish and journeys that begin before the log")
	asJSON := fs.Bool("json", false, "print the report as one JSON document")
	quiet := fs.Bool("quiet", false, "print only problems; the exit status says the rest")
	maxProblems := fs.Int("max-problems", 100, "problems and warnings listed in detail (`N` each); the rest are counted")

	// Flags may come before or after the file.
	var files []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(files) != 1 {
		fmt.Fprintf(stderr, "fsmctl replay: want one FILE (or - for stdin), got %d\n", len(files))
		fs.Usage()
		return 2
	}
	if *maxProblems < 1 {
		*maxProblems = 1
	}

	name := files[0]
	in := stdin
	if name == "-" {
		name = "stdin"
	} else {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "fsmctl replay: %v\n", err)
			return 2
		}
		defer f.Close()
		in = f
	}

	out := bufio.NewWriterSize(stdout, 64<<10)
	defer out.Flush()
	requested := func(j *pipeline.Journey) bool {
		return *journeys || *requestID != "" && j.RequestID == *requestID
	}
	opts := pipeline.ReplayOptions{
		RequestID:       *requestID,
		Journeys:        *journeys,
		AllowIncomplete: *allowIncomplete,
		MaxProblems:     *maxProblems,
	}
	if *requestID != "" || *quiet {
		opts.MaxProblemJourneys = -1
	}

	// Journeys asked for are printed as they end, so that memory stays
	// bounded however many there are; those of problem requests (a bounded
	// few) wait for the end, after the problems they illustrate.
	var problemJourneys []*pipeline.Journey
	printed := 0
	var jw *jsonJourneys
	switch {
	case *asJSON:
		jw = &jsonJourneys{w: out}
		opts.OnJourney = jw.write
	default:
		opts.OnJourney = func(j *pipeline.Journey) {
			if requested(j) {
				printed++
				if !*quiet {
					writeJourney(out, j)
				}
				return
			}
			problemJourneys = append(problemJourneys, j)
		}
	}

	start := time.Now()
	rep, err := pipeline.Replay(in, opts)
	elapsed := time.Since(start)
	if err != nil {
		fmt.Fprintf(stderr, "fsmctl replay: reading %s: %v\n", name, err)
		out.Flush()
		return 2
	}
	switch {
	case *asJSON:
		if err := jw.finish(rep); err != nil {
			fmt.Fprintf(stderr, "fsmctl replay: %v\n", err)
			return 2
		}
	case *quiet:
		writeProblems(out, rep, problemJourneys)
	default:
		writeSummary(out, name, rep, elapsed)
		writeProblems(out, rep, problemJourneys)
		if *requestID != "" && printed == 0 {
			fmt.Fprintf(out, "\nrequest %s does not appear in the log\n", *requestID)
		}
		writeVerdict(out, rep)
	}
	if rep.ProblemCount > 0 {
		return 1
	}
	return 0
}

// jsonJourneys streams a JSON document whose "journeys" array is written as
// the journeys end, followed by the rest of the report.
type jsonJourneys struct {
	w   io.Writer
	n   int
	err error
}

func (j *jsonJourneys) write(jr *pipeline.Journey) {
	if j.err != nil {
		return
	}
	sep := ","
	if j.n == 0 {
		sep = `{"journeys":[`
	}
	j.n++
	b, err := json.Marshal(jr)
	if err != nil {
		j.err = err
		return
	}
	if _, err := fmt.Fprintf(j.w, "%s\n%s", sep, b); err != nil {
		j.err = err
	}
}

func (j *jsonJourneys) finish(rep *pipeline.ReplayReport) error {
	if j.err != nil {
		return j.err
	}
	rest, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if j.n == 0 {
		_, err = fmt.Fprintf(j.w, "%s\n", rest)
		return err
	}
	// rest is `{ … }` without journeys (OnJourney took them all).
	_, err = fmt.Fprintf(j.w, "\n],\n%s\n", strings.TrimPrefix(string(rest), "{\n"))
	return err
}

// writeJourney prints one journey, a line per log line.
func writeJourney(w io.Writer, j *pipeline.Journey) {
	fmt.Fprintf(w, "\njourney %s  (line %d", pipeline.Printable(j.RequestID), j.Line)
	if !j.Start.IsZero() {
		fmt.Fprintf(w, ", %s", j.Start.Format("2006-01-02T15:04:05.000000Z07:00"))
	}
	if j.Model != "" {
		fmt.Fprintf(w, ", model %s", pipeline.Printable(j.Model))
	}
	if j.Partial {
		fmt.Fprint(w, ", its received line is not in the log")
	}
	fmt.Fprintln(w, ")")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, s := range j.Steps {
		fmt.Fprintf(tw, "  %d\t+%s\t  %s\n", s.Line, shortDuration(s.Offset), stepText(s))
	}
	tw.Flush()
	switch j.Outcome {
	case "":
		fmt.Fprintf(w, "  = unfinished after %d attempt(s)\n", j.Attempts)
	default:
		fmt.Fprintf(w, "  = %s", j.Outcome)
		if j.Status != 0 {
			fmt.Fprintf(w, " %d", j.Status)
		}
		if j.Latency > 0 {
			fmt.Fprintf(w, " in %s", shortDuration(j.Latency))
		}
		fmt.Fprintf(w, " after %d attempt(s)\n", j.Attempts)
	}
	for _, p := range j.Problems {
		fmt.Fprintf(w, "  ! line %d: %s: %s\n", p.Line, p.Kind, pipeline.Printable(p.Reason))
	}
}

// stepText describes one step of a journey in words.
func stepText(s pipeline.JourneyStep) string {
	s.Model, s.Provider, s.Error, s.Reason = pipeline.Printable(s.Model), pipeline.Printable(s.Provider), pipeline.Printable(s.Error), pipeline.Printable(s.Reason)
	var b strings.Builder
	fmt.Fprintf(&b, "%-10s", s.Action)
	add := func(format string, args ...any) { b.WriteByte(' '); fmt.Fprintf(&b, format, args...) }
	switch s.Action {
	case "received":
		if s.Model != "" {
			add("model %s", s.Model)
		}
	case "attempt":
		add("#%d %s", s.Attempt, s.Provider)
		if s.Model != "" {
			add("(%s)", s.Model)
		}
	case "failed":
		add("#%d %s: %s", s.Attempt, s.Provider, s.Error)
		if s.UpstreamStatus != 0 {
			add("upstream %d", s.UpstreamStatus)
		}
		if s.RetryAfter != 0 {
			add("retry-after %s", shortDuration(s.RetryAfter))
		}
		if s.Latency != 0 {
			add("after %s", shortDuration(s.Latency))
		}
	case "backoff":
		add("wait %s", shortDuration(s.Wait))
		if s.Error != "" {
			add("after %s", s.Error)
		}
	case "skipped":
		add("%s: %s", s.Provider, s.Reason)
		if s.ProbeIn != 0 {
			add("(probe in %s)", shortDuration(s.ProbeIn))
		}
	case "failover":
		add("to %s", s.Provider)
		if s.Reason != "" {
			add("(%s)", s.Reason)
		}
	case "success":
		add("#%d %s status %d", s.Attempt, s.Provider, s.Status)
	case "gave_up", "rejected":
		add("status %d", s.Status)
		if s.Reason != "" {
			add("(%s)", s.Reason)
		}
		if s.Error != "" {
			add("last error %s at %s", s.Error, s.Provider)
		}
	default:
		if s.Provider != "" {
			add("%s", s.Provider)
		}
		if s.Error != "" {
			add("%s", s.Error)
		}
		if s.Reason != "" {
			add("(%s)", s.Reason)
		}
	}
	out := strings.TrimRight(b.String(), " ")
	if s.Event != "" {
		out += fmt.Sprintf("  [%s → %s]", s.From, s.To)
	}
	return out
}

// writeSummary prints the counters.
func writeSummary(w io.Writer, name string, rep *pipeline.ReplayReport, elapsed time.Duration) {
	fmt.Fprintf(w, "\nreplay of %s: %d lines (%s) in %s\n", name, rep.Lines, sizeText(rep.Bytes), shortDuration(elapsed))
	fmt.Fprintf(w, "  lines       %d journal (%d transitions), %d ignored, %d restart(s)\n",
		rep.JournalLine, rep.Transitions, rep.Ignored, rep.Restarts)
	for _, s := range rep.IgnoredSamples {
		fmt.Fprintf(w, "              ignored line %d: %s\n", s.Line, pipeline.Printable(s.Text))
	}
	if !rep.First.IsZero() {
		fmt.Fprintf(w, "  time        %s → %s (%s)\n", rep.First.Format(time.RFC3339), rep.Last.Format(time.RFC3339), rep.Last.Sub(rep.First).Round(time.Second))
	}
	r := rep.Requests
	fmt.Fprintf(w, "  requests    %d received: %d succeeded, %d failed, %d unfinished", r.Received, r.Succeeded, r.Failed, r.Unfinished)
	if r.Partial > 0 {
		fmt.Fprintf(w, " (+%d partial journeys)", r.Partial)
	}
	fmt.Fprintln(w)
	if len(r.ByStatus) > 0 {
		var statuses []string
		for _, st := range slices.Sorted(maps.Keys(r.ByStatus)) {
			statuses = append(statuses, fmt.Sprintf("%d ×%d", st, r.ByStatus[st]))
		}
		fmt.Fprintf(w, "  failed      %s", strings.Join(statuses, "  "))
		if r.Rejected > 0 {
			fmt.Fprintf(w, "  (%d rejected before any attempt)", r.Rejected)
		}
		fmt.Fprintln(w)
	}
	var attempts []string
	for n, c := range r.Attempts {
		if c == 0 {
			continue
		}
		plus := ""
		if n == pipeline.MaxAttemptsBucket {
			plus = "+"
		}
		attempts = append(attempts, fmt.Sprintf("%d%s: %d", n, plus, c))
	}
	fmt.Fprintf(w, "  attempts    %s  (requests by provider calls made)\n", strings.Join(attempts, "  "))
	if l := rep.Latency; l.Count > 0 {
		fmt.Fprintf(w, "  latency     p50 %s  p90 %s  p99 %s  max %s  mean %s  (received → end, %d requests)\n",
			shortDuration(l.P50), shortDuration(l.P90), shortDuration(l.P99), shortDuration(l.Max), shortDuration(l.Mean), l.Count)
	}
	if len(r.UnfinishedIDs) > 0 {
		ids := make([]string, len(r.UnfinishedIDs))
		for i, id := range r.UnfinishedIDs {
			ids[i] = pipeline.Printable(id)
		}
		fmt.Fprintf(w, "  unfinished  %s", strings.Join(ids, " "))
		if n := r.Unfinished - int64(len(r.UnfinishedIDs)); n > 0 {
			fmt.Fprintf(w, " … and %d more", n)
		}
		fmt.Fprintln(w)
	}
	if len(rep.Providers) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  provider\tattempts\tok\tfailures\tretries\tfailover out/in\tskipped\tbreaker trip/probe/recover/reopen")
	for _, name := range slices.Sorted(maps.Keys(rep.Providers)) {
		p := rep.Providers[name]
		var fails []string
		for _, c := range slices.Sorted(maps.Keys(p.Failures)) {
			fails = append(fails, fmt.Sprintf("%s %d", pipeline.Printable(c), p.Failures[c]))
		}
		failText := strings.Join(fails, ", ")
		if failText == "" {
			failText = "-"
		}
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\t%d\t%d/%d\t%d\t%d/%d/%d/%d\n", pipeline.Printable(name), p.Attempts, p.Successes, failText,
			p.Retries, p.FailoversOut, p.FailoversIn, p.Skipped, p.Trips, p.Probes, p.Recovers, p.Reopens)
	}
	tw.Flush()
}

// writeProblems prints the warnings, the problems and the journeys of the
// problem requests.
func writeProblems(w io.Writer, rep *pipeline.ReplayReport, journeys []*pipeline.Journey) {
	list := func(title string, ps []pipeline.Problem, total int64) {
		if total == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s: %d\n", title, total)
		for _, p := range ps {
			fmt.Fprintf(w, "  %s\n", p)
		}
		if n := total - int64(len(ps)); n > 0 {
			fmt.Fprintf(w, "  … and %d more\n", n)
		}
	}
	list("warnings", rep.Warnings, rep.WarningCount)
	list("problems", rep.Problems, rep.ProblemCount)
	if len(journeys) > 0 {
		fmt.Fprintf(w, "\njourneys of problem requests (the first %d):\n", len(journeys))
		for _, j := range journeys {
			writeJourney(w, j)
		}
	}
}

func writeVerdict(w io.Writer, rep *pipeline.ReplayReport) {
	if rep.ProblemCount == 0 {
		fmt.Fprintf(w, "\nreplay: OK, every transition is legal and every request finished")
		if rep.Requests.Unfinished > 0 {
			fmt.Fprintf(w, " or was allowed not to")
		}
		fmt.Fprintln(w)
		return
	}
	fmt.Fprintf(w, "\nreplay: FAILED with %d problem(s)\n", rep.ProblemCount)
}

// shortDuration rounds d to what a reader needs: µs under a millisecond,
// 0.1 ms under a second, ms under a minute.
func shortDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d < time.Millisecond && d > -time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second && d > -time.Second:
		return d.Round(100 * time.Microsecond).String()
	case d < time.Minute && d > -time.Minute:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(100 * time.Millisecond).String()
	}
}

func sizeText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

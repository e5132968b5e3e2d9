package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// machine is where a run ran; numbers from two machines do not compare.
type machine struct {
	NProc      int    `json:"nproc"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model"`
	Kernel     string `json:"kernel,omitempty"`
	GoVersion  string `json:"go_version"`
}

// runInfo identifies a run in every line it writes.
type runInfo struct {
	RunID   string
	Started time.Time
	Commit  string
	Dirty   bool
	Machine machine
}

func newRunInfo(orchestratorPath string) runInfo {
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	now := time.Now().UTC()
	ri := runInfo{
		RunID:   now.Format("20060102T150405Z") + "-" + hex.EncodeToString(rnd[:]),
		Started: now,
		Machine: machine{
			NProc:      runtime.NumCPU(),
			GOMAXPROCS: runtime.GOMAXPROCS(0),
			CPUModel:   cpuModel(),
			GoVersion:  runtime.Version(),
		},
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		ri.Machine.Kernel = strings.TrimSpace(string(b))
	}
	// The commit measured is the orchestrator binary's, which Go stamps at
	// build time; the working tree's HEAD is the fallback.
	if bi, err := buildinfo.ReadFile(orchestratorPath); err == nil {
		ri.Machine.GoVersion = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				ri.Commit = s.Value
			case "vcs.modified":
				ri.Dirty = s.Value == "true"
			}
		}
	}
	if ri.Commit == "" {
		if out, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
			ri.Commit = strings.TrimSpace(string(out))
			// Tracked files changed since that commit make the numbers not
			// the commit's.
			st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
			ri.Dirty = err == nil && len(bytes.TrimSpace(st)) > 0
		}
	}
	return ri
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	return parseCPUModel(b)
}

func parseCPUModel(b []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return ""
}

// record is one JSON line: one configuration's results for one metric set,
// or (config "orchestrator", metric "targets") the run's verdicts. Each
// median is over the rounds, whose values are kept next to it. Fields that do
// not apply to a metric are left out.
type record struct {
	RunID   string  `json:"run_id"`
	Time    string  `json:"time"`
	Commit  string  `json:"commit,omitempty"`
	Dirty   bool    `json:"dirty,omitempty"`
	Machine machine `json:"machine"`

	Config string `json:"config"` // mock | proxy | orchestrator | orchestrator-reject
	Metric string `json:"metric"` // throughput | latency | stream_ttfb | soak | targets

	Conns     int     `json:"conns,omitempty"`
	Rounds    int     `json:"rounds,omitempty"`
	DurationS float64 `json:"duration_s,omitempty"` // per round
	RateRPS   float64 `json:"rate_rps,omitempty"`   // open loop: the fixed rate

	RPS       float64   `json:"rps,omitempty"`
	RPSRounds []float64 `json:"rps_rounds,omitempty"`

	// CPU time (utime+stime) of the process in front of the mock (the proxy
	// or the orchestrator; the mock itself for config "mock"), and of the
	// mock, per request, in microseconds.
	CPUUsPerReq       float64   `json:"cpu_us_per_req,omitempty"`
	CPUUsPerReqRounds []float64 `json:"cpu_us_per_req_rounds,omitempty"`
	MockCPUUsPerReq   float64   `json:"mock_cpu_us_per_req,omitempty"`
	GenCPUUsPerReq    float64   `json:"generator_cpu_us_per_req,omitempty"` // gwbench's own, closed loop
	PeakRSSKB         int64     `json:"peak_rss_kb,omitempty"`              // VmHWM of that process

	// Open loop, from each request's scheduled send time.
	Samples       int       `json:"samples,omitempty"` // all rounds
	P50Ms         float64   `json:"p50_ms,omitempty"`
	P99Ms         float64   `json:"p99_ms,omitempty"`
	P999Ms        float64   `json:"p999_ms,omitempty"`
	MaxMs         float64   `json:"max_ms,omitempty"`
	P99MsRounds   []float64 `json:"p99_ms_rounds,omitempty"`
	SendLagP99Ms  float64   `json:"send_lag_p99_ms,omitempty"` // the generator's own lateness
	Errors        int64     `json:"errors,omitempty"`          // transport errors
	UnexpectedAns int64     `json:"unexpected_status,omitempty"`

	// The share of the machine's CPU that other processes used (and the
	// hypervisor stole) during the rounds, median: a noisy neighbour shows
	// here before it shows as a regression.
	OtherCPUPct *float64 `json:"other_cpu_pct,omitempty"`
	StealPct    *float64 `json:"steal_pct,omitempty"`

	Soak    *soakResult   `json:"soak,omitempty"`
	Targets []targetCheck `json:"targets,omitempty"`
	// NoisyReruns is how many rounds of the run were run again because
	// other processes took over 5 % of the CPU during them (targets line).
	NoisyReruns *int `json:"noisy_reruns,omitempty"`
}

func (ri runInfo) record(config, metric string) record {
	return record{
		RunID: ri.RunID, Time: ri.Started.Format(time.RFC3339), Commit: ri.Commit, Dirty: ri.Dirty,
		Machine: ri.Machine, Config: config, Metric: metric,
	}
}

// appendRecords appends one JSON line per record to path.
func appendRecords(path string, recs []record) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

package main

import (
	"testing"
	"time"
)

func TestParseStatCPUCountsFromTheLastParenthesis(t *testing.T) {
	// A command name with spaces and a ')' must not shift the fields.
	stat := "4242 (orch (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 1000 1000000 2000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 3250 * time.Millisecond; got != want { // (250+75) ticks of 10 ms
		t.Errorf("cpu = %v, want %v", got, want)
	}
}

func TestParseStatCPURejectsShortLines(t *testing.T) {
	for _, in := range []string{"", "12 (x) S 1 2 3", "12 x S 1 2 3 4 5 6 7 8 9 10 11 12 13 14"} {
		if _, err := parseStatCPU([]byte(in)); err == nil {
			t.Errorf("parseStatCPU(%q) succeeded, want an error", in)
		}
	}
}

const statusFixture = `Name:	orchestrator
Umask:	0022
State:	S (sleeping)
Pid:	4242
VmPeak:	 1262112 kB
VmSize:	 1262112 kB
VmHWM:	   23940 kB
VmRSS:	   22716 kB
RssAnon:	    9876 kB
Threads:	9
`

func TestParseStatusMemReadsRSSAndHWM(t *testing.T) {
	got, err := parseStatusMem([]byte(statusFixture))
	if err != nil {
		t.Fatal(err)
	}
	if got != (memKB{RSS: 22716, HWM: 23940}) {
		t.Errorf("memory = %+v, want RSS 22716, HWM 23940", got)
	}
}

func TestParseStatusMemWantsBoth(t *testing.T) {
	if _, err := parseStatusMem([]byte("Name:\tkthreadd\nState:\tS (sleeping)\n")); err == nil {
		t.Error("a status without VmRSS/VmHWM (a kernel thread) parsed")
	}
}

func TestParseProcStatSplitsBusyStealAndTotal(t *testing.T) {
	stat := "cpu  100 5 50 1000 10 3 7 20 0 0\ncpu0 50 2 25 500 5 1 3 10 0 0\nintr 1\n"
	got, err := parseProcStat([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := (sysCPU{Total: 1195, Busy: 165, Steal: 20}); got != want {
		t.Errorf("sysCPU = %+v, want %+v", got, want)
	}
}

func TestCPUDeltaChargesTheRestToOthers(t *testing.T) {
	// Over 1 s of a 2-CPU machine (200 ticks), processes ran 100 ticks
	// (1 s), of which the bench's own were 0.6 s: others used 0.4 s of 2 s.
	a := cpuSnap{watch: []time.Duration{0}, ours: 0, sys: sysCPU{}}
	b := cpuSnap{watch: []time.Duration{300 * time.Millisecond}, ours: 600 * time.Millisecond,
		sys: sysCPU{Total: 200, Busy: 100, Steal: 10}}
	d := b.sub(a)
	if d.Watch[0] != 300*time.Millisecond {
		t.Errorf("watched = %v, want 300ms", d.Watch[0])
	}
	if d.OtherPct != 20 {
		t.Errorf("others = %v %%, want 20 %%", d.OtherPct)
	}
	if d.StealPct != 5 {
		t.Errorf("steal = %v %%, want 5 %%", d.StealPct)
	}
}

func TestParseCPUModel(t *testing.T) {
	info := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
	if got := parseCPUModel([]byte(info)); got != "AMD EPYC 7B13" {
		t.Errorf("cpu model = %q", got)
	}
}

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. The
// kernel fixes it at 100 on every Linux architecture Go supports, and reading
// it properly (sysconf) would need cgo.
const clockTicks = 100

// cpuTime is the CPU a process has used so far, user plus system, read from
// /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU returns utime+stime from the text of /proc/PID/stat. The
// command name (field 2) is in parentheses and may hold spaces and ')', so
// the fields are counted from the last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat: no command name")
	}
	// After ')' come field 3 (state) onwards; utime and stime are fields 14
	// and 15, so indexes 11 and 12 here.
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the command name, want at least 13", len(f))
	}
	utime, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc stat: utime: %w", err)
	}
	stime, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc stat: stime: %w", err)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// memKB is a process's resident set now (VmRSS) and at its peak (VmHWM), in
// KiB, read from /proc/PID/status.
type memKB struct {
	RSS, HWM int64
}

func memory(pid int) (memKB, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memKB{}, err
	}
	return parseStatusMem(b)
}

// parseStatusMem reads VmRSS and VmHWM from the text of /proc/PID/status,
// whose lines look like "VmHWM:\t   12345 kB".
func parseStatusMem(b []byte) (memKB, error) {
	var m memKB
	var seen int
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return memKB{}, fmt.Errorf("/proc status: %s: unexpected value %q", name, rest)
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return memKB{}, fmt.Errorf("/proc status: %s: %w", name, err)
		}
		if name == "VmRSS" {
			m.RSS = v
		} else {
			m.HWM = v
		}
		seen++
	}
	if seen != 2 {
		return memKB{}, fmt.Errorf("/proc status: VmRSS or VmHWM missing (a kernel thread or a zombie?)")
	}
	return m, nil
}

// sysCPU is the machine's CPU time so far, from the first line of
// /proc/stat, in USER_HZ ticks.
type sysCPU struct {
	Total int64 // every column
	// Busy is user, nice, system, irq and softirq. With tick-based
	// accounting a tick spent in (soft)irq goes to that column and also to
	// the stime of the task it interrupted, so all of them are needed for the
	// bench's processes' own CPU to be a part of Busy.
	Busy  int64
	Steal int64 // taken by the hypervisor from this VM
}

func readSysCPU() (sysCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return sysCPU{}, err
	}
	return parseProcStat(b)
}

// parseProcStat reads the aggregate "cpu" line: user nice system idle iowait
// irq softirq steal [guest guest_nice]. Guest time is already in user.
func parseProcStat(b []byte) (sysCPU, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return sysCPU{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var v [8]int64
	for i := range v {
		n, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			return sysCPU{}, fmt.Errorf("/proc/stat: %w", err)
		}
		v[i] = n
	}
	s := sysCPU{Busy: v[0] + v[1] + v[2] + v[5] + v[6], Steal: v[7]}
	for _, n := range v {
		s.Total += n
	}
	return s, nil
}

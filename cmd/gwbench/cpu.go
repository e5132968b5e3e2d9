package main

import (
	"os"
	"time"
)

// cpuSnap is the CPU used so far by the watched processes, by all of ours
// and by the machine.
type cpuSnap struct {
	watch []time.Duration
	self  time.Duration
	ours  time.Duration
	sys   sysCPU
}

func snapCPU(t target) cpuSnap {
	s := cpuSnap{watch: make([]time.Duration, len(t.Watch))}
	for i, pid := range t.Watch {
		s.watch[i], _ = cpuTime(pid) // a process that cannot be read counts 0
	}
	s.self, _ = cpuTime(os.Getpid())
	s.ours = s.self
	for _, pid := range t.Ours {
		d, _ := cpuTime(pid)
		s.ours += d
	}
	s.sys, _ = readSysCPU()
	return s
}

// cpuDelta is the CPU used over a phase.
type cpuDelta struct {
	Watch []time.Duration // per watched pid
	Self  time.Duration   // the generator's (this process's)
	// OtherPct is the share of the machine's CPU (all cores) that processes
	// other than the bench's used: builds and tests running alongside make
	// the tail latencies noisy, and this says by how much they competed.
	OtherPct float64
	// StealPct is the share the hypervisor took from this VM.
	StealPct float64
}

func (a cpuSnap) sub(b cpuSnap) cpuDelta {
	d := cpuDelta{Watch: make([]time.Duration, len(a.watch)), Self: a.self - b.self}
	for i := range a.watch {
		d.Watch[i] = a.watch[i] - b.watch[i]
	}
	total := a.sys.Total - b.sys.Total
	if total > 0 {
		tick := time.Second / clockTicks
		busy := time.Duration(a.sys.Busy-b.sys.Busy) * tick
		other := max(busy-(a.ours-b.ours), 0)
		d.OtherPct = 100 * float64(other) / float64(time.Duration(total)*tick)
		d.StealPct = 100 * float64(a.sys.Steal-b.sys.Steal) / float64(total)
	}
	return d
}

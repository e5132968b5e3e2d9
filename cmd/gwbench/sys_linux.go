package main

import (
	"syscall"
	"time"
)

// childAttr makes a child die with the bench, even when the bench is killed
// without a chance to clean up.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// preciseTimer sets this OS thread's timer slack to 1 ns and returns a
// function that restores it. The caller holds the thread (LockOSThread).
func preciseTimer() (restore func()) {
	const prSetTimerSlack, prGetTimerSlack = 29, 30
	old, _, _ := syscall.Syscall(syscall.SYS_PRCTL, prGetTimerSlack, 0, 0)
	_, _, _ = syscall.Syscall(syscall.SYS_PRCTL, prSetTimerSlack, 1, 0)
	return func() { _, _, _ = syscall.Syscall(syscall.SYS_PRCTL, prSetTimerSlack, old, 0) }
}

// sleepUntil sleeps with nanosleep(2) on the calling thread, not on a Go
// timer (see pace).
func sleepUntil(t time.Time) {
	for {
		d := time.Until(t)
		if d <= 0 {
			return
		}
		ts := syscall.NsecToTimespec(int64(d))
		_ = syscall.Nanosleep(&ts, nil) // EINTR: the loop sleeps the rest
	}
}

//go:build !linux

package main

import (
	"syscall"
	"time"
)

// gwbench measures through /proc and runs on Linux only (checkProc says so
// at start); these let the package build elsewhere, so that `go build
// ./...` and `go vet ./...` work on any developer's machine.

func childAttr() *syscall.SysProcAttr { return nil }

func preciseTimer() (restore func()) { return func() {} }

func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

package pipeline

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// waitClosed fails unless ch closes within a generous bound (the functions
// run in their own goroutines).
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: not done", what)
	}
}

func TestCallCtxCancel(t *testing.T) {
	c := newCallCtx()
	if c.Err() != nil {
		t.Fatalf("Err before cancel = %v", c.Err())
	}
	if _, ok := c.Deadline(); ok {
		t.Fatal("a callCtx has no deadline")
	}
	if c.Value("k") != nil {
		t.Fatal("a callCtx carries no values")
	}
	done := c.Done()
	if done != c.Done() {
		t.Fatal("Done returned two channels")
	}
	select {
	case <-done:
		t.Fatal("Done closed before cancel")
	default:
	}
	c.cancel()
	c.cancel() // a second cancel does nothing
	if !errors.Is(c.Err(), context.Canceled) {
		t.Fatalf("Err after cancel = %v, want context.Canceled", c.Err())
	}
	waitClosed(t, done, "Done")
}

// TestCallCtxDoneAfterCancel: a Done asked for only after the cancel is
// closed already.
func TestCallCtxDoneAfterCancel(t *testing.T) {
	c := newCallCtx()
	c.cancel()
	select {
	case <-c.Done():
	default:
		t.Fatal("Done of a cancelled callCtx is open")
	}
}

func TestCallCtxAfterFunc(t *testing.T) {
	c := newCallCtx()
	ran := make(chan struct{})
	kept := false
	stopKept := c.AfterFunc(func() { kept = true })
	c.AfterFunc(func() { close(ran) })
	stopThird := c.AfterFunc(func() { kept = true })
	if !stopKept() || !stopThird() {
		t.Fatal("stop before cancel must report that it kept the function from running")
	}
	if stopKept() {
		t.Fatal("a second stop must report false")
	}
	c.cancel()
	waitClosed(t, ran, "AfterFunc")
	if kept {
		t.Fatal("a stopped function ran")
	}

	// Registered after the cancel: runs at once; stop cannot keep it.
	late := make(chan struct{})
	stop := c.AfterFunc(func() { close(late) })
	waitClosed(t, late, "AfterFunc after cancel")
	if stop() {
		t.Fatal("stop after the function ran must report false")
	}
}

// TestCallCtxWithStdlib: package context's derived contexts and AfterFunc
// follow a callCtx's cancel through its AfterFunc.
func TestCallCtxWithStdlib(t *testing.T) {
	c := newCallCtx()
	child, cancelChild := context.WithCancel(c)
	defer cancelChild()
	timed, cancelTimed := context.WithTimeout(c, time.Hour)
	defer cancelTimed()
	ran := make(chan struct{})
	context.AfterFunc(c, func() { close(ran) })
	c.cancel()
	waitClosed(t, child.Done(), "WithCancel child")
	waitClosed(t, timed.Done(), "WithTimeout child")
	waitClosed(t, ran, "context.AfterFunc")
	if !errors.Is(child.Err(), context.Canceled) {
		t.Fatalf("child Err = %v", child.Err())
	}
}

// TestCallCtxConcurrent is for the race detector: cancel, Done, Err and
// AfterFunc with its stop from many goroutines at once.
func TestCallCtxConcurrent(t *testing.T) {
	for range 50 {
		c := newCallCtx()
		var wg sync.WaitGroup
		var mu sync.Mutex
		ran, stopped := 0, 0
		for range 8 {
			wg.Go(func() {
				stop := c.AfterFunc(func() { mu.Lock(); ran++; mu.Unlock() })
				_ = c.Err()
				if stop() {
					mu.Lock()
					stopped++
					mu.Unlock()
				}
			})
		}
		wg.Go(func() { <-c.Done() })
		wg.Go(c.cancel)
		wg.Wait()
		// Every function either was stopped or runs; wait for the runs.
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			n := ran + stopped
			mu.Unlock()
			if n == 8 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("ran %d + stopped %d, want 8", ran, stopped)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

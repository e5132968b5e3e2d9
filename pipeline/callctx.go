package pipeline

import (
	"context"
	"sync"
	"time"
)

// callCtx is the context of one request's calls to its providers, or of one
// stream's reads. It is cancelled once: when the client leaves, or when the
// handler is done with it. It never expires and carries no values.
//
// It does on the request path what context.WithCancel(context.Background())
// followed by context.AfterFunc did, with one allocation instead of seven:
//   - Done's channel is made only when someone waits on it (a backoff, a
//     stream's read); a plain call only asks Err;
//   - AfterFunc, with which the providers abort an attempt in flight, keeps
//     the function itself instead of making a context for each. Go's own
//     context.AfterFunc and context.WithCancel use it too when given a
//     callCtx (the afterFuncer interface of package context).
//
// It also holds the request's client watch, which cancels it.
type callCtx struct {
	mu     sync.Mutex
	err    error         // context.Canceled once cancelled
	done   chan struct{} // made by the first Done, closed by cancel
	nextID uint64
	after  []afterFunc // waiting to run at cancel
	inline [1]afterFunc

	watch clientWatch
}

type afterFunc struct {
	id uint64
	f  func()
}

func newCallCtx() *callCtx {
	c := &callCtx{}
	c.after = c.inline[:0]
	return c
}

// Deadline reports that a callCtx never expires.
func (c *callCtx) Deadline() (time.Time, bool) { return time.Time{}, false }

// Value reports that a callCtx carries no values.
func (c *callCtx) Value(any) any { return nil }

// Err returns context.Canceled once cancelled, nil before.
func (c *callCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Done returns a channel closed at cancel, the same one on every call.
func (c *callCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		}
	}
	return c.done
}

// AfterFunc arranges for f to run in its own goroutine once c is cancelled,
// at once if it already is. stop unregisters f; it reports whether it kept f
// from running. These are context.AfterFunc's semantics.
func (c *callCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	c.nextID++
	id := c.nextID
	c.after = append(c.after, afterFunc{id: id, f: f})
	c.mu.Unlock()
	return func() bool { return c.unregister(id) }
}

func (c *callCtx) unregister(id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, a := range c.after {
		if a.id == id {
			last := len(c.after) - 1
			copy(c.after[i:], c.after[i+1:])
			c.after[last] = afterFunc{} // lets f go
			c.after = c.after[:last]
			return true
		}
	}
	return false
}

// cancel cancels c and starts its after-functions. Later calls do nothing.
func (c *callCtx) cancel() {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = context.Canceled
	if c.done != nil {
		close(c.done)
	}
	after := c.after
	c.after = nil
	c.mu.Unlock()
	for _, a := range after {
		go a.f()
	}
}

// String names the context in panics and debug output, as package context's
// own contexts do.
func (c *callCtx) String() string { return "pipeline.callCtx" }

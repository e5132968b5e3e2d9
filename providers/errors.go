package providers

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Class is the kind of a failed call, DESIGN §4. The policy decides from the
// class alone. A Class is itself an error, so errors.Is(err, ClassRateLimited)
// asks whether err is a rate-limit failure.
type Class string

// The error classes.
const (
	ClassTimeout     Class = "timeout"      // no answer within the attempt timeout
	ClassServer      Class = "server"       // 500, 502, 503, 504
	ClassMalformed   Class = "malformed"    // a 2xx whose body does not parse
	ClassOverloaded  Class = "overloaded"   // Anthropic 529
	ClassRateLimited Class = "rate_limited" // 429
	ClassConnect     Class = "connect"      // refused, reset, DNS failure
	ClassAuth        Class = "auth"         // 401, 403
	ClassInvalid     Class = "invalid"      // 400, 404, 413, 422: the request itself is wrong
	ClassCanceled    Class = "canceled"     // the client went away, or the request's deadline
)

func (c Class) Error() string { return "provider error: " + string(c) }

// BreakerFailure reports whether a failure of this class counts against the
// provider's breaker. Invalid requests and cancellations say nothing about
// the provider's health.
func (c Class) BreakerFailure() bool {
	switch c {
	case ClassInvalid, ClassCanceled, "":
		return false
	}
	return true
}

// Error is a classified failure of one provider call. Message is the
// provider's own message, safe to show the client; it never contains the API
// key.
type Error struct {
	Class      Class
	Provider   string
	Status     int           // the provider's HTTP status; 0 when no answer came
	RetryAfter time.Duration // what the provider asked us to wait; 0 when it did not say
	Type       string        // the provider's error type (e.g. rate_limit_error)
	Code       string        // the provider's error code, when it gives one
	Param      string        // the offending parameter, when the provider names one
	Message    string
	Err        error // the underlying transport or parse error, if any
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: %s", e.Provider, e.Class)
	if e.Status != 0 {
		msg += fmt.Sprintf(" (status %d)", e.Status)
	}
	if e.Message != "" {
		msg += ": " + e.Message
	} else if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches the error's class: errors.Is(err, ClassTimeout).
func (e *Error) Is(target error) bool {
	c, ok := target.(Class)
	return ok && c == e.Class
}

// ClassOf returns the class of err: the class of a *Error, ClassCanceled for a
// cancelled context, ClassTimeout for an expired one, and ClassServer for
// anything else unexpected. It returns "" for nil.
func ClassOf(err error) Class {
	if err == nil {
		return "" // before pe, which errors.As moves to the heap
	}
	if pe, ok := err.(*Error); ok {
		return pe.Class
	}
	var pe *Error
	switch {
	case errors.As(err, &pe):
		return pe.Class
	case errors.Is(err, context.Canceled):
		return ClassCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return ClassTimeout
	default:
		var c Class
		if errors.As(err, &c) {
			return c
		}
		return ClassServer
	}
}

// RetryAfterOf returns the wait a provider asked for, or 0.
func RetryAfterOf(err error) time.Duration {
	if err == nil {
		return 0
	}
	if pe, ok := err.(*Error); ok {
		return pe.RetryAfter
	}
	var pe *Error
	if errors.As(err, &pe) {
		return pe.RetryAfter
	}
	return 0
}

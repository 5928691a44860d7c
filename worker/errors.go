package worker

import (
	"errors"
	"fmt"
	"time"

	"github.com/gworker/gworker/protocol"
)

// PyError returns an error that Python sees as the builtin exception typ
// with the given args, e.g. PyError("KeyError", "missing") fails the task
// as KeyError('missing').
func PyError(typ string, args ...any) error { return protocol.NewException(typ, args...) }

// pythonError is implemented by errors that know their Python identity
// (for example the deadlock guard's error, seen as RuntimeError).
type pythonError interface {
	PythonException() *protocol.Exception
}

// DefaultExceptionType is the Python type of a task error that does not
// choose one: Python rebuilds it as a builtin Exception with the error's
// text as its only argument.
const DefaultExceptionType = "Exception"

// ToException converts a task's error into the exception Celery stores:
// a *protocol.Exception found in the chain is used as is, an error that
// knows its Python identity gives it, and any other error becomes
// builtins.Exception(err.Error()).
func ToException(err error) *protocol.Exception {
	var pe *protocol.Exception
	if errors.As(err, &pe) {
		return pe
	}
	var py pythonError
	if errors.As(err, &py) {
		if e := py.PythonException(); e != nil {
			return e
		}
	}
	return protocol.NewException(DefaultExceptionType, err.Error())
}

// RetryError asks the worker to retry the task: return it (or an error
// wrapping it) from a task. Build it with Retry.
type RetryError struct {
	// Err is the exception recorded with the RETRY state; nil records null.
	Err error
	// Countdown is the delay before the retry when ETA is zero; a negative
	// value means the task's default retry delay.
	Countdown time.Duration
	ETA       time.Time
	// MaxRetries overrides the task's max_retries when not nil.
	MaxRetries *int
	// Args and Kwargs replace the arguments of the retried task when not nil.
	Args   []any
	Kwargs map[string]any
}

func (r *RetryError) Error() string {
	when := "default delay"
	switch {
	case !r.ETA.IsZero():
		when = protocol.FormatTime(r.ETA)
	case r.Countdown >= 0:
		when = fmt.Sprintf("%gs", r.Countdown.Seconds())
	}
	if r.Err != nil {
		return fmt.Sprintf("Retry in %s: %v", when, r.Err)
	}
	return "Retry in " + when
}

// Unwrap returns the recorded error.
func (r *RetryError) Unwrap() error { return r.Err }

// RetryOption configures Retry.
type RetryOption func(*RetryError)

// Countdown sets the delay before the retry.
func Countdown(d time.Duration) RetryOption { return func(r *RetryError) { r.Countdown = d } }

// ETA sets the time of the retry.
func ETA(t time.Time) RetryOption { return func(r *RetryError) { r.ETA = t } }

// MaxRetries overrides the task's retry limit for this retry.
func MaxRetries(n int) RetryOption { return func(r *RetryError) { r.MaxRetries = &n } }

// WithArgs replaces the arguments of the retried task.
func WithArgs(args []any, kwargs map[string]any) RetryOption {
	return func(r *RetryError) { r.Args, r.Kwargs = args, kwargs }
}

// Retry returns an error that makes the worker retry the task, as Celery's
// self.retry(exc=err, ...): the message is published again with the same
// id and retries+1, and RETRY is stored. Past max_retries the task fails
// with err, or with MaxRetriesExceededError when err is nil.
func Retry(err error, opts ...RetryOption) error {
	r := &RetryError{Err: err, Countdown: -1}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Celery's exceptions the worker stores.
func notRegistered(name any) *protocol.Exception {
	return &protocol.Exception{Type: "NotRegistered", Module: "celery.exceptions", Args: []any{name}}
}

func taskRevoked(reason string) *protocol.Exception {
	return &protocol.Exception{Type: "TaskRevokedError", Module: "celery.exceptions", Args: []any{reason}}
}

func invalidTask(msg string) *protocol.Exception {
	return &protocol.Exception{Type: "InvalidTaskError", Module: "celery.exceptions", Args: []any{msg}}
}

func contentDisallowed(msg string) *protocol.Exception {
	return &protocol.Exception{Type: "ContentDisallowed", Module: "kombu.exceptions", Args: []any{msg}}
}

func maxRetriesExceeded(msg string) *protocol.Exception {
	return &protocol.Exception{Type: "MaxRetriesExceededError", Module: "celery.exceptions", Args: []any{msg}}
}

func softTimeLimitExceeded() *protocol.Exception {
	return &protocol.Exception{Type: "SoftTimeLimitExceeded", Module: "billiard.exceptions", Args: []any{}}
}

func timeLimitExceeded(limit float64) *protocol.Exception {
	return &protocol.Exception{Type: "TimeLimitExceeded", Module: "billiard.exceptions", Args: []any{pyNumber(limit)}}
}

// pyNumber returns an int64 for whole numbers, so that Python sees 10, not
// 10.0, as Celery stores the limit it was given.
func pyNumber(f float64) any {
	if f == float64(int64(f)) {
		return int64(f)
	}
	return f
}

// ErrSoftTimeLimitExceeded is the cause of a task context cancelled by its
// soft time limit (context.Cause(ctx)).
var ErrSoftTimeLimitExceeded = softTimeLimitExceeded()

package worker

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
)

// RunFunc runs one task the worker took off its queue and may start (it
// is neither revoked nor expired, and its early acknowledgement, if any,
// is done): the registered function under the task's time limits, then
// everything that follows it, as Celery's trace does between the
// task_prerun and task_postrun signals: the result stored, callbacks,
// chain, chord body, errbacks or the retry published. The follow-ups are
// published under ctx, so that what a middleware puts in it (a trace
// span) reaches them.
//
// It returns nil when the task succeeded, its *RetryError when the task
// was retried, a *TaskFailedError when it failed (also when it asked for a
// retry that was refused), ErrTerminated when a revoke terminated it, and
// ErrRequeued when its message went back to the queue instead (a cold
// shutdown abandoned it, or its result could not be stored).
type RunFunc func(ctx context.Context, req *Request) error

// Middleware wraps the running of every task, as Celery's task_prerun,
// task_postrun and task_failure signals or asynq's mux.Use: code before
// next runs before the task, code after it once the task's outcome is
// stored and its follow-ups are sent. req says which task runs (name, id,
// retries, headers, delivery information, the decoded message); read it,
// never change it.
//
// A middleware calls next at most once, with the req and a context derived
// from the ctx it was given, before it returns. One that does not call
// next decides the task's outcome itself, as if the task function had
// returned (nil, err): nil stores SUCCESS with no value, a Retry retries
// it, any other error fails it. A panic in a middleware fails the task as
// a panic in the task does.
//
// Worker.Config.Middleware lists them, the first one outermost. With none
// the worker calls its RunFunc directly: the seam costs nothing.
type Middleware func(next RunFunc) RunFunc

// TaskFailedError is what a RunFunc returns for a failed task: the
// exception stored as its result, and the error the task returned (nil
// when it panicked, passed its hard time limit, or its result could not
// be encoded). errors.As finds either.
type TaskFailedError struct {
	Exception *protocol.Exception
	Err       error
}

func (e *TaskFailedError) Error() string { return e.Exception.Error() }

// Unwrap returns the task's error and the exception.
func (e *TaskFailedError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Exception}
	}
	return []error{e.Err, e.Exception}
}

// ErrRequeued is what a RunFunc returns when the task's message went back
// to the queue rather than settle here: a cold shutdown abandoned an
// acks_late task, or its result could not be stored.
var ErrRequeued = errors.New("worker: the task's message went back to the queue")

// errNotThisRun: next was called twice, or with a Request the worker did
// not give.
var errNotThisRun = errors.New("worker: a middleware called next twice, or with a Request of its own")

// chain builds the RunFunc of mws around the worker's own, or returns nil
// when there is no middleware.
func chain(mws []Middleware, inner RunFunc) RunFunc {
	if len(mws) == 0 {
		return nil
	}
	h := inner
	for i := len(mws) - 1; i >= 0; i-- {
		if mws[i] != nil {
			h = mws[i](h)
		}
	}
	return h
}

// runChain runs j through the middleware: the request is built first, so
// that the middleware sees it; the task's own context derives from the
// one the middleware passes on.
func (e *executor) runChain(j *job) {
	req := e.runner.request(j)
	ctx := withRequest(e.base, req, e.runner.log)
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				if j.handled {
					e.log.Error("panic in a task middleware after the task ran", zap.String("id", j.msg.ID),
						zap.String("panic", fmt.Sprint(p)), zap.Stack("stack"))
					return
				}
				j.handled = true
				e.settleIn(context.WithoutCancel(ctx), j, outcome{
					exc:       protocol.NewException("RuntimeError", fmt.Sprintf("panic: %v", p)),
					traceback: panicTraceback(p), req: req,
				})
			}
		}()
		err = e.chain(ctx, req)
	}()
	if !j.handled {
		// The middleware did not call next: it decided the outcome.
		j.handled = true
		out := classify(ctx, j, outcome{err: err})
		out.req = req
		e.settleIn(context.WithoutCancel(ctx), j, out)
	}
}

// runNext is the RunFunc the middleware wraps: run j, then settle it.
func (e *executor) runNext(ctx context.Context, req *Request) error {
	j := req.job
	if j == nil || j.handled {
		return errNotThisRun
	}
	j.handled = true
	out := e.runIn(ctx, req, j)
	e.releaseSlot(j)
	e.settleIn(context.WithoutCancel(ctx), j, out)
	switch {
	case out.terminated:
		return ErrTerminated
	case j.requeued:
		return ErrRequeued
	case j.failure != nil:
		cause := out.err
		if out.retry != nil {
			cause = out.retry.Err
		}
		return &TaskFailedError{Exception: j.failure, Err: cause}
	case out.retry != nil:
		return out.retry
	}
	return nil
}

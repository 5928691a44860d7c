package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// outcome is how one run of a task ended.
type outcome struct {
	value     any
	err       error
	exc       *protocol.Exception // failure to store
	traceback string
	retry     *RetryError
	replace   *ReplaceError // the task asked to be replaced
	hardLimit bool
	req       *Request
	runtime   time.Duration
	// terminated: a revoke terminated the task while it ran.
	terminated bool
}

// run is the executor's second stage: it records j as running, announces
// its start (and stores STARTED when tracked), has the runner call it, and
// records its end.
func (e *executor) run(j *job) outcome { return e.runIn(nil, nil, j) }

// runIn is run with the task's context and request that middleware saw
// (nil, nil without middleware).
func (e *executor) runIn(ctx context.Context, req *Request, j *job) outcome {
	e.active.start(j)
	if e.events.on() {
		e.events.emit(&TaskEvent{Type: EventTaskStarted, Message: j.msg, Queue: queueOf(j), Received: j.received, Published: publishedAt(j)})
	}
	if (e.trackStarted || j.task.Options.TrackStarted) && !j.ignoresResult() {
		e.results.store(context.Background(), e.results.started(j.msg))
	}
	start := time.Now()
	out := e.runner.runIn(ctx, req, j)
	out.runtime = time.Since(start)
	out.terminated = e.active.end(j)
	return out
}

// runner calls a task's handler under the task's context, with panics
// recovered and time limits applied.
type runner struct {
	hostname string
	log      *zap.Logger
	base     context.Context // the parent of every task context
	limits   *timeLimits
	active   *activeTasks // told how to terminate the task
}

// request builds the Request of j.
func (r *runner) request(j *job) *Request {
	msg := j.msg
	req := requestOf(msg, r.hostname)
	req.job = j
	return req
}

// run calls j's handler and returns how it ended.
func (r *runner) run(j *job) outcome { return r.runIn(nil, nil, j) }

// runIn is run under parent, the context carrying req that middleware
// passed on; without middleware (nil, nil) the runner makes both.
func (r *runner) runIn(parent context.Context, req *Request, j *job) outcome {
	msg := j.msg
	if req == nil {
		req = r.request(j)
		parent = withRequest(r.base, req, r.log)
	}
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	r.active.setCancel(j, cancel)
	ctx = result.MarkTask(ctx)

	hard, soft := r.limits.of(msg, j.task)
	if soft > 0 && (hard <= 0 || soft < hard) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, soft, ErrSoftTimeLimitExceeded)
		defer cancel()
	}
	out := r.runLimited(ctx, j, hard)
	out.req = req
	return out
}

func (r *runner) runLimited(ctx context.Context, j *job, hard time.Duration) outcome {
	msg := j.msg
	if hard <= 0 {
		return classify(ctx, j, call(ctx, j))
	}
	hardExc := timeLimitExceeded(hard.Seconds())
	if msg.TimeLimit != nil {
		hardExc = timeLimitExceeded(*msg.TimeLimit)
	}
	hctx, cancel := context.WithTimeoutCause(ctx, hard, hardExc)
	defer cancel()
	done := make(chan outcome, 1)
	go func() { done <- call(hctx, j) }()
	select {
	case out := <-done:
		return classify(ctx, j, out)
	case <-hctx.Done():
		if context.Cause(hctx) != hardExc {
			// Cold shutdown: the task is abandoned, its message requeued.
			out := <-done
			return classify(ctx, j, out)
		}
		// The goroutine is abandoned: Go cannot kill it, its context is
		// cancelled with TimeLimitExceeded as the cause, its slot is
		// freed and whatever it returns later is dropped.
		return outcome{exc: hardExc, hardLimit: true}
	}
}

// call runs the handler with panics recovered.
func call(ctx context.Context, j *job) (out outcome) {
	defer func() {
		if p := recover(); p != nil {
			out = outcome{
				exc:       protocol.NewException("RuntimeError", fmt.Sprintf("panic: %v", p)),
				traceback: panicTraceback(p),
			}
		}
	}()
	v, err := j.task.Handler(ctx, j.msg.Args, j.msg.Kwargs)
	return outcome{value: v, err: err}
}

func panicTraceback(p any) string {
	return fmt.Sprintf("panic: %v\n\n%s", p, debug.Stack())
}

// classify turns a handler's return into an outcome: success, retry or
// failure with the exception Python will see.
func classify(ctx context.Context, j *job, out outcome) outcome {
	if out.exc != nil || out.err == nil {
		return out
	}
	err := out.err
	var r *RetryError
	if errors.As(err, &r) {
		out.retry = r
		return out
	}
	var rp *ReplaceError
	if errors.As(err, &rp) {
		out.replace = rp
		return out
	}
	if cause := context.Cause(ctx); cause == ErrSoftTimeLimitExceeded &&
		(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, ErrSoftTimeLimitExceeded)) {
		out.exc = softTimeLimitExceeded()
		out.traceback = traceback(j.task.Name, out.exc)
		return out
	}
	if p := j.task.Options.AutoRetry; p != nil && p.matches(err) {
		out.retry = &RetryError{Err: err, Countdown: p.countdown(j.msg.Retries), MaxRetries: p.MaxRetries}
		return out
	}
	out.exc = ToException(err)
	out.traceback = out.exc.Traceback
	if out.traceback == "" {
		out.traceback = traceback(j.task.Name, out.exc)
	}
	return out
}

// traceback renders a Python-looking traceback for a Go error, so that
// AsyncResult.traceback shows where the failure came from.
func traceback(task string, exc *protocol.Exception) string {
	return fmt.Sprintf("Traceback (most recent call last):\n  Go task %q\n%s\n", task, exc.Error())
}

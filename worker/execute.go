package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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
	hardLimit bool
	req       *Request
}

func (w *Worker) acksLate(t *Task) bool {
	if t.Options.AcksLate != nil {
		return *t.Options.AcksLate
	}
	return w.cfg.AcksLate
}

// execute runs one task and does everything that follows it.
func (w *Worker) execute(j *job) {
	msg, task := j.msg, j.task
	if w.revocation.discardIfExpired(j) || w.revocation.discardIfRevoked(j) {
		return
	}
	late := w.acksLate(task)
	if !late {
		if err := j.ack(w.log); err != nil {
			// The broker still holds the message (its channel is gone) and
			// will deliver it again: running it now would run it twice.
			w.log.Warn("Task "+msg.Name()+"["+msg.ID+"] not started: its early ack failed; the broker will deliver it again",
				zap.String("id", msg.ID), zap.String("reason", "ack-failed"))
			return
		}
	} else if w.staleBeforeStart(j) || w.joinRun(j) {
		return
	} else {
		defer w.endRun(j)
		if w.poisoned(j) {
			return
		}
	}
	w.active.start(j)
	if w.events.on() {
		w.events.emit(&TaskEvent{Type: EventTaskStarted, Message: msg})
	}
	ignore := j.ignoresResult()
	if (w.cfg.TrackStarted || task.Options.TrackStarted) && !ignore {
		w.results.store(context.Background(), w.results.started(msg))
	}
	start := time.Now()
	out := w.run(j)
	runtime := time.Since(start)
	if w.active.end(j) {
		// Terminated by a revoke: whatever the task returned is dropped.
		w.revocation.announce(j, "terminated", true, j.signal)
		return
	}
	if (out.exc != nil || out.retry != nil) && w.base.Err() != nil {
		// A cold shutdown cancelled it (a task that finished in spite of
		// it is stored and acknowledged as usual).
		if late {
			w.giveBack(j)
			return
		}
		if errors.Is(out.err, context.Canceled) {
			// Acknowledged before it ran: the broker has no copy, so the
			// client learns that the worker went away, as Celery's
			// WorkerLostError tells of a pool process that died.
			out.exc = workerLost("Worker exited prematurely: cold shutdown while task " + msg.Name() + "[" + msg.ID + "] ran.")
			out.traceback = traceback(task.Name, out.exc)
		}
	}

	ctx := context.Background()
	switch {
	case out.retry != nil:
		w.handleRetry(ctx, j, out.retry, out.req.Children())
	case out.exc == nil:
		w.counts.succeeded.Add(1)
		children := append(out.req.Children(), w.followups.afterSuccess(ctx, msg, out.value)...)
		if !ignore {
			j.final = w.results.meta(msg, result.Success, out.value, "", children)
			err := w.results.store(ctx, j.final)
			j.storeErr = err
			if err != nil {
				// A value the backend cannot encode fails the task, as
				// Celery's EncodeError does.
				if isEncodeError(err) {
					exc := protocol.NewException("EncodeError", err.Error())
					exc.Module = "kombu.exceptions"
					w.fail(ctx, j, exc, "", false, children)
					break
				}
			}
		}
		w.followups.chordPart(ctx, msg, result.Success, out.value)
		if w.events.on() {
			w.events.emit(&TaskEvent{Type: EventTaskSucceeded, Message: msg, Result: out.value, Runtime: runtime})
		}
		if j.storeErr != nil {
			w.log.Error(fmt.Sprintf("Task %s[%s] ran in %.6fs but its result could not be stored: %v", msg.Name(), msg.ID, runtime.Seconds(), j.storeErr))
		} else if ce := w.log.Check(zap.InfoLevel, ""); ce != nil {
			// Built only when INFO is on: repr and formatting are a
			// good part of the per-task cost otherwise.
			ce.Message = fmt.Sprintf("Task %s[%s] succeeded in %.6fs: %s", msg.Name(), msg.ID, runtime.Seconds(), truncate(protocol.Repr(out.value), 1024))
			ce.Write()
		}
	default:
		w.fail(ctx, j, out.exc, out.traceback, out.hardLimit, out.req.Children())
	}
	if late {
		if j.storeErr != nil && !isEncodeError(j.storeErr) {
			// acks_late promises that a task is acknowledged only once its
			// result is stored: give the message back to run again.
			w.log.Error("result not stored; the message goes back to the queue", zap.String("id", msg.ID), zap.Error(j.storeErr))
			j.acked, j.requeued = true, true
			if err := j.d.Reject(true); err != nil {
				w.log.Warn("requeue", zap.String("id", msg.ID), zap.Error(err))
			}
			if w.events.on() {
				w.events.emit(&TaskEvent{Type: EventTaskRejected, Message: msg, Requeue: true})
			}
			return
		}
		j.ack(w.log)
	} else if j.storeErr != nil && !isEncodeError(j.storeErr) && j.final != nil && w.cfg.Backend != nil {
		// Acknowledged already: the broker has no copy to deliver again,
		// so keep the result until the store is back.
		w.pending.keep(j.final)
	}
}

// giveBack handles an acks_late task that a cold shutdown cancelled:
// whatever it returned is dropped, nothing is stored, and its message goes
// back to the queue for another worker, as when Celery's cold shutdown
// kills the pool. If the consumer is closed already, the broker has
// requeued the message itself.
func (w *Worker) giveBack(j *job) {
	msg := j.msg
	w.log.Warn("Task "+msg.Name()+"["+msg.ID+"] abandoned by the cold shutdown; its message goes back to the queue",
		zap.String("id", msg.ID), zap.String("reason", "cold-shutdown"))
	j.acked, j.requeued = true, true
	if err := j.d.Reject(true); err != nil {
		w.log.Debug("requeue", zap.String("id", msg.ID), zap.Error(err))
	}
	if w.events.on() {
		w.events.emit(&TaskEvent{Type: EventTaskRejected, Message: msg, Requeue: true})
	}
}

func isEncodeError(err error) bool {
	var ee *protocol.EncodeError
	return errors.As(err, &ee)
}

// fail stores FAILURE and does what Celery does after a failure.
func (w *Worker) fail(ctx context.Context, j *job, exc *protocol.Exception, tb string, hard bool, children []any) {
	msg := j.msg
	w.counts.failed.Add(1)
	j.final = w.results.meta(msg, result.Failure, exc.Value(), tb, children)
	j.storeErr = w.results.store(ctx, j.final)
	w.followups.afterFailure(ctx, msg, exc, tb)
	w.followups.chordPart(ctx, msg, result.Failure, exc.Value())
	if w.events.on() {
		w.events.emit(&TaskEvent{Type: EventTaskFailed, Message: msg, Exception: exc, Traceback: tb})
	}
	if hard {
		w.log.Error(fmt.Sprintf("Hard time limit (%v) exceeded for %s[%s]", exc.Args[0], msg.Name(), msg.ID))
		return
	}
	w.log.Error(fmt.Sprintf("Task %s[%s] raised unexpected: %s", msg.Name(), msg.ID, truncate(exc.Error(), 1024)))
}

// timeLimits returns the hard and soft limits of a message: the message's
// own, else the task's, else the worker's (--time-limit, --soft-time-limit).
func (w *Worker) timeLimits(msg *protocol.Message, t *Task) (hard, soft time.Duration) {
	hard, soft = w.cfg.TimeLimit, w.cfg.SoftTimeLimit
	if t.Options.TimeLimit > 0 {
		hard = t.Options.TimeLimit
	}
	if t.Options.SoftTimeLimit > 0 {
		soft = t.Options.SoftTimeLimit
	}
	if msg.TimeLimit != nil {
		hard = seconds(*msg.TimeLimit)
	}
	if msg.SoftTimeLimit != nil {
		soft = seconds(*msg.SoftTimeLimit)
	}
	return hard, soft
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// run calls the task's handler under its context, with panics recovered
// and time limits applied.
func (w *Worker) run(j *job) outcome {
	msg := j.msg
	req := &Request{
		ID: msg.ID, Task: msg.Task, Args: msg.Args, Kwargs: msg.Kwargs, Retries: msg.Retries,
		RootID: msg.RootID, ParentID: msg.ParentID, GroupID: msg.GroupID, GroupIndex: msg.GroupIndex,
		ETA: msg.ETA, Expires: msg.Expires, Headers: msg.Headers, ReplyTo: msg.ReplyTo,
		CorrelationID: msg.CorrelationID, Hostname: w.cfg.Hostname, Message: msg,
		DeliveryInfo: DeliveryInfo{Exchange: msg.Exchange, RoutingKey: msg.RoutingKey, Priority: msg.Priority, Redelivered: msg.Redelivered},
	}
	// Lazy: the fields are encoded only if the task logs something.
	log := w.log.WithLazy(zap.String("task", msg.Name()), zap.String("id", msg.ID))
	ctx, cancel := context.WithCancelCause(withRequest(w.base, req, log))
	defer cancel(nil)
	w.active.setCancel(j, cancel)
	ctx = result.MarkTask(ctx)

	hard, soft := w.timeLimits(msg, j.task)
	hard, soft = w.runtimeLimits(msg, j.task.Name, hard, soft)
	if soft > 0 && (hard <= 0 || soft < hard) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, soft, ErrSoftTimeLimitExceeded)
		defer cancel()
	}
	out := w.runLimited(ctx, j, hard)
	out.req = req
	return out
}

func (w *Worker) runLimited(ctx context.Context, j *job, hard time.Duration) outcome {
	msg := j.msg
	if hard <= 0 {
		return w.classify(ctx, j, w.call(ctx, j))
	}
	hardExc := timeLimitExceeded(hard.Seconds())
	if msg.TimeLimit != nil {
		hardExc = timeLimitExceeded(*msg.TimeLimit)
	}
	hctx, cancel := context.WithTimeoutCause(ctx, hard, hardExc)
	defer cancel()
	done := make(chan outcome, 1)
	go func() { done <- w.call(hctx, j) }()
	select {
	case out := <-done:
		return w.classify(ctx, j, out)
	case <-hctx.Done():
		if context.Cause(hctx) != hardExc {
			// Cold shutdown: the task is abandoned, its message requeued.
			out := <-done
			return w.classify(ctx, j, out)
		}
		// The goroutine is abandoned: Go cannot kill it, its context is
		// cancelled with TimeLimitExceeded as the cause, its slot is
		// freed and whatever it returns later is dropped.
		return outcome{exc: hardExc, hardLimit: true}
	}
}

// call runs the handler with panics recovered.
func (w *Worker) call(ctx context.Context, j *job) (out outcome) {
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

// classify turns a handler's return into an outcome: success, retry or
// failure with the exception Python will see.
func (w *Worker) classify(ctx context.Context, j *job, out outcome) outcome {
	if out.exc != nil || out.err == nil {
		return out
	}
	err := out.err
	var r *RetryError
	if errors.As(err, &r) {
		out.retry = r
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

// handleRetry publishes the task again and stores RETRY, or fails it past
// its retry limit.
func (w *Worker) handleRetry(ctx context.Context, j *job, r *RetryError, children []any) {
	msg, task := j.msg, j.task
	max := 3
	if task.Options.MaxRetries != nil {
		max = *task.Options.MaxRetries
	}
	if r.MaxRetries != nil {
		max = *r.MaxRetries
	}
	if max >= 0 && msg.Retries >= max {
		var exc *protocol.Exception
		if r.Err != nil {
			exc = ToException(r.Err)
		} else {
			exc = maxRetriesExceeded(fmt.Sprintf("Can't retry %s[%s] args:%s kwargs:%s", msg.Task, msg.ID, protocol.ArgsRepr(msg.Args), protocol.Repr(msg.Kwargs)))
		}
		w.fail(ctx, j, exc, traceback(task.Name, exc), false, nil)
		return
	}
	eta := r.ETA
	if eta.IsZero() {
		d := r.Countdown
		if d < 0 {
			d = task.Options.DefaultRetryDelay
			if d == 0 {
				d = 180 * time.Second
			}
		}
		eta = time.Now().Add(d)
	}
	if w.cfg.Followups == nil {
		w.fail(ctx, j, protocol.NewException("RuntimeError", "retry is not possible: the worker cannot publish"), "", false, nil)
		return
	}
	if err := w.cfg.Followups.Retry(ctx, msg, eta, r.Args, r.Kwargs); err != nil {
		exc := protocol.NewException("RuntimeError", "retry failed: "+err.Error())
		w.fail(ctx, j, exc, "", false, nil)
		return
	}
	w.counts.retried.Add(1)
	if w.events.on() {
		ev := &TaskEvent{Type: EventTaskRetried, Message: msg}
		if r.Err != nil {
			ev.Exception = ToException(r.Err)
			ev.Traceback = traceback(task.Name, ev.Exception)
		}
		w.events.emit(ev)
	}
	var excVal any
	if r.Err != nil {
		excVal = ToException(r.Err).Value()
	}
	tb := ""
	if r.Err != nil {
		tb = traceback(task.Name, ToException(r.Err))
	}
	w.results.store(ctx, w.results.meta(msg, result.Retry, excVal, tb, append(children, resultTuple(msg.ID))))
	w.log.Info(fmt.Sprintf("Task %s[%s] retry: %s", msg.Name(), msg.ID, r.Error()))
}

// resultTuple is the tuple form of an AsyncResult without parent.
func resultTuple(id string) []any { return []any{[]any{id, nil}, nil} }

// AutoRetryPolicy retries a task automatically on matching errors, as
// Celery's autoretry_for with retry_backoff.
type AutoRetryPolicy struct {
	// On reports whether err should be retried; nil retries every error.
	On func(err error) bool
	// MaxRetries overrides the task's max_retries.
	MaxRetries *int
	// Backoff is the first delay; each retry doubles it (Celery's
	// retry_backoff). Zero retries at once.
	Backoff time.Duration
	// MaxBackoff caps the delay (Celery's retry_backoff_max, 600 s).
	MaxBackoff time.Duration
	// Jitter draws the delay uniformly from [0, delay] (retry_jitter).
	Jitter bool
}

func (p *AutoRetryPolicy) matches(err error) bool { return p.On == nil || p.On(err) }

func (p *AutoRetryPolicy) countdown(retries int) time.Duration {
	if p.Backoff <= 0 {
		return 0
	}
	max := p.MaxBackoff
	if max <= 0 {
		max = 600 * time.Second
	}
	d := p.Backoff
	for i := 0; i < retries && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	if p.Jitter {
		d = time.Duration(rand.Int64N(int64(d) + 1))
	}
	return d
}

package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// settle is the executor's last stage: whatever j's run returned is
// stored (SUCCESS, FAILURE, RETRY with the task published again, or
// REVOKED when a revoke terminated it), its follow-ups are sent and its
// message is settled: acknowledged, or given back to the queue when an
// acks_late task could not keep its promise. The result of an
// early-acknowledged task that the store refused waits in memory.
func (e *executor) settle(j *job, late bool, out outcome) {
	j.late = late
	e.settleIn(context.Background(), j, out)
}

// settleIn is settle under ctx, which carries what middleware put in the
// task's context (never its cancellation): the follow-ups are published
// under it.
func (e *executor) settleIn(ctx context.Context, j *job, out outcome) {
	msg, task, late := j.msg, j.task, j.late
	if out.terminated {
		// Terminated by a revoke: whatever the task returned is dropped.
		e.revocation.announce(j, "terminated", true, j.signal)
		return
	}
	if (out.exc != nil || out.retry != nil) && e.base.Err() != nil {
		// A cold shutdown cancelled it (a task that finished in spite of
		// it is stored and acknowledged as usual).
		if late {
			e.giveBack(j)
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

	switch {
	case out.retry != nil:
		e.retry(ctx, j, out.retry, out.req.Children())
	case out.replace != nil:
		e.replace(ctx, j, out.replace)
	case out.exc == nil:
		e.succeed(ctx, j, &out)
	default:
		j.runtime = out.runtime
		e.fail(ctx, j, out.exc, out.traceback, out.hardLimit, out.req.Children())
	}
	e.finish(j, late)
}

// succeed stores SUCCESS and does what Celery does after a success. A
// value the backend cannot encode fails the task, as Celery's EncodeError
// does.
func (e *executor) succeed(ctx context.Context, j *job, out *outcome) {
	msg := j.msg
	e.counts.succeeded.Add(1)
	children := append(out.req.Children(), e.followups.afterSuccess(ctx, msg, out.value)...)
	if !j.ignoresResult() {
		j.final = e.results.meta(msg, result.Success, out.value, "", children)
		j.storeErr = e.results.store(ctx, j.final)
		if isEncodeError(j.storeErr) {
			exc := protocol.NewException("EncodeError", j.storeErr.Error())
			exc.Module = "kombu.exceptions"
			e.fail(ctx, j, exc, "", false, children)
			return
		}
	}
	e.followups.chordPart(ctx, msg, result.Success, out.value)
	if e.events.on() {
		e.events.emit(&TaskEvent{Type: EventTaskSucceeded, Message: msg, Result: out.value, Runtime: out.runtime,
			Queue: queueOf(j), Received: j.received, Published: publishedAt(j)})
	}
	if j.storeErr != nil {
		e.log.Error(fmt.Sprintf("Task %s[%s] ran in %.6fs but its result could not be stored: %v", msg.Name(), msg.ID, out.runtime.Seconds(), j.storeErr))
	} else if ce := e.log.Check(zap.InfoLevel, ""); ce != nil {
		// Built only when INFO is on: repr and formatting are a
		// good part of the per-task cost otherwise.
		ce.Message = fmt.Sprintf("Task %s[%s] succeeded in %.6fs: %s", msg.Name(), msg.ID, out.runtime.Seconds(), truncate(protocol.Repr(out.value), 1024))
		ce.Write()
	}
}

// finish settles j's message once its result is stored (or not).
func (e *executor) finish(j *job, late bool) {
	stored := j.storeErr == nil || isEncodeError(j.storeErr)
	if late {
		if !stored {
			// acks_late promises that a task is acknowledged only once its
			// result is stored: give the message back to run again.
			e.log.Error("result not stored; the message goes back to the queue", zap.String("id", j.msg.ID), zap.Error(j.storeErr))
			j.acked, j.requeued = true, true
			if err := j.d.Reject(true); err != nil {
				e.log.Warn("requeue", zap.String("id", j.msg.ID), zap.Error(err))
			}
			if e.events.on() {
				e.events.emit(&TaskEvent{Type: EventTaskRejected, Message: j.msg, Requeue: true})
			}
			return
		}
		// Remembered whether or not the ack fails (a lost ack need not
		// fail here), and before it is written: once the ack is on its
		// way the channel may close and the broker deliver the copy to
		// another consumer of this worker, which must find it here.
		e.finished.add(finishedKey(j.msg.ID, j.msg.Retries))
		j.ack(e.log)
	} else if !stored && j.final != nil && e.results.backend != nil {
		// Acknowledged already: the broker has no copy to deliver again,
		// so keep the result until the store is back.
		e.pending.keep(j.final)
	}
}

// giveBack handles an acks_late task that a cold shutdown cancelled:
// whatever it returned is dropped, nothing is stored, and its message goes
// back to the queue for another worker, as when Celery's cold shutdown
// kills the pool. If the consumer is closed already, the broker has
// requeued the message itself.
func (e *executor) giveBack(j *job) {
	msg := j.msg
	e.log.Warn("Task "+msg.Name()+"["+msg.ID+"] abandoned by the cold shutdown; its message goes back to the queue",
		zap.String("id", msg.ID), zap.String("reason", "cold-shutdown"))
	j.acked, j.requeued = true, true
	if err := j.d.Reject(true); err != nil {
		e.log.Debug("requeue", zap.String("id", msg.ID), zap.Error(err))
	}
	if e.events.on() {
		e.events.emit(&TaskEvent{Type: EventTaskRejected, Message: msg, Requeue: true})
	}
}

// fail stores FAILURE and does what Celery does after a failure.
func (e *executor) fail(ctx context.Context, j *job, exc *protocol.Exception, tb string, hard bool, children []any) {
	msg := j.msg
	e.counts.failed.Add(1)
	j.failure = exc
	j.final = e.results.meta(msg, result.Failure, exc.Value(), tb, children)
	j.storeErr = e.results.store(ctx, j.final)
	e.followups.afterFailure(ctx, msg, exc, tb)
	e.followups.chordPart(ctx, msg, result.Failure, exc.Value())
	if e.events.on() {
		e.events.emit(&TaskEvent{Type: EventTaskFailed, Message: msg, Exception: exc, Traceback: tb, Runtime: j.runtime,
			Queue: queueOf(j), Received: j.received, Published: publishedAt(j)})
	}
	if hard {
		e.log.Error(fmt.Sprintf("Hard time limit (%v) exceeded for %s[%s]", exc.Args[0], msg.Name(), msg.ID))
		return
	}
	e.log.Error(fmt.Sprintf("Task %s[%s] raised unexpected: %s", msg.Name(), msg.ID, truncate(exc.Error(), 1024)))
}

// retry publishes the task again and stores RETRY, or fails it past
// its retry limit.
func (e *executor) retry(ctx context.Context, j *job, r *RetryError, children []any) {
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
		e.fail(ctx, j, exc, traceback(task.Name, exc), false, nil)
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
	if e.followups.f == nil {
		e.fail(ctx, j, protocol.NewException("RuntimeError", "retry is not possible: the worker cannot publish"), "", false, nil)
		return
	}
	if err := e.followups.f.Retry(ctx, msg, eta, r.Args, r.Kwargs); err != nil {
		exc := protocol.NewException("RuntimeError", "retry failed: "+err.Error())
		e.fail(ctx, j, exc, "", false, nil)
		return
	}
	e.counts.retried.Add(1)
	if e.events.on() {
		ev := &TaskEvent{Type: EventTaskRetried, Message: msg, Queue: queueOf(j)}
		if r.Err != nil {
			ev.Exception = ToException(r.Err)
			ev.Traceback = traceback(task.Name, ev.Exception)
		}
		e.events.emit(ev)
	}
	var excVal any
	if r.Err != nil {
		excVal = ToException(r.Err).Value()
	}
	tb := ""
	if r.Err != nil {
		tb = traceback(task.Name, ToException(r.Err))
	}
	e.results.store(ctx, e.results.meta(msg, result.Retry, excVal, tb, append(children, resultTuple(msg.ID))))
	e.log.Info(fmt.Sprintf("Task %s[%s] retry: %s", msg.Name(), msg.ID, r.Error()))
}

// resultTuple is the tuple form of an AsyncResult without parent.
func resultTuple(id string) []any { return []any{[]any{id, nil}, nil} }

// isEncodeError reports whether err says that the backend cannot encode a
// result (no retry can store it).
func isEncodeError(err error) bool {
	if err == nil {
		return false
	}
	var ee *protocol.EncodeError
	return errors.As(err, &ee)
}

package worker

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// job is one received task message on its way through the worker.
type job struct {
	d        Delivery
	msg      *protocol.Message
	task     *Task
	received time.Time
	acked    bool
	// storeErr is the error of storing the task's final state, if any;
	// final is that state.
	storeErr error
	final    *result.Meta
	// requeued: the message went back to the queue after the run.
	requeued bool
	// late: acknowledged after the run; handled: the middleware's next
	// ran it (or its outcome was decided without it).
	late, handled bool
	// keepHeld: publishing the ETA message again failed; the hold keeps
	// it rather than try again at once.
	keepHeld bool
	// runtime is how long the task ran, for a task that failed after it
	// ran (0 when it never ran).
	runtime time.Duration
	// failure is the exception the task failed with, once settled.
	failure *protocol.Exception
	// released: the job left its pool slot once its task returned
	// (pool.release).
	released bool
	// storedState is the task's state in the result backend, read for a
	// redelivered acks_late message before it starts ("" when not read).
	storedState result.State

	// Guarded by activeTasks.mu: set while the task runs.
	started      time.Time
	ackedAtStart bool
	cancel       context.CancelCauseFunc
	terminated   bool
	signal       string
}

// ack acknowledges j once and returns the error of that ack (logged).
func (j *job) ack(log *zap.Logger) error {
	if j.acked {
		return nil
	}
	j.acked = true
	err := j.d.Ack()
	if err != nil {
		log.Warn("ack failed", zap.String("id", j.msg.ID), zap.Error(err))
	}
	return err
}

// ignoresResult reports whether no result is stored for j.
func (j *job) ignoresResult() bool { return j.msg.IgnoreResult || j.task.Options.IgnoreResult }

// requeue gives a message that did not run back to its queue.
func requeue(log *zap.Logger, d Delivery) {
	if err := d.Reject(true); err != nil {
		log.Debug("requeue", zap.Error(err))
	}
}

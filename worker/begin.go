package worker

import "go.uber.org/zap"

// begin is the executor's first stage, the checks before j may start. A
// revoked or expired task is discarded. A task acknowledged early is
// acknowledged now, and does not run when that fails. An acks_late task
// does not run when its delivery is stale, when it is a redelivered copy
// of a task running here (it is parked until that run ends), when it is a
// redelivered copy of a task that finished (finished.go), or when it is a
// poison message. begin reports whether j runs, and whether it is
// acknowledged late; then the caller must call endRun once j is settled.
func (e *executor) begin(j *job) (late, run bool) {
	if e.revocation.discardIfExpired(j) || e.revocation.discardIfRevoked(j) {
		return false, false
	}
	late = e.lateAck(j.task)
	if !late {
		if err := j.ack(e.log); err != nil {
			// The broker still holds the message (its channel is gone) and
			// will deliver it again: running it now would run it twice.
			e.log.Warn("Task "+j.msg.Name()+"["+j.msg.ID+"] not started: its early ack failed; the broker will deliver it again",
				zap.String("id", j.msg.ID), zap.String("reason", "ack-failed"))
			return false, false
		}
		return false, true
	}
	if e.staleBeforeStart(j) || e.joinRun(j) {
		return true, false
	}
	if e.finishedBefore(j) || e.poisoned(j) {
		e.endRun(j)
		return true, false
	}
	return true, true
}

// lateAck reports whether tasks of t are acknowledged after they ran.
func (e *executor) lateAck(t *Task) bool {
	if t.Options.AcksLate != nil {
		return *t.Options.AcksLate
	}
	return e.acksLate
}

package worker

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
)

// ReplaceError asks the worker to replace the running task by a signature
// (a task, chain, group or chord), as Celery's Task.replace does: return
// it from a task, built with Replace. The replacement inherits the task's
// id (its final result is stored under it), callbacks, errbacks, chord
// membership, group id and the rest of its chain; the task itself stores
// no result. The worker applies it through its Followups, which must
// implement Replacer.
type ReplaceError struct {
	Sig protocol.Signature
}

func (r *ReplaceError) Error() string {
	return "Replaced by new task (" + replacementName(r.Sig) + ")"
}

// Replace returns the error that replaces the running task by sig.
func Replace(sig protocol.Signature) error { return &ReplaceError{Sig: sig} }

// Replacer is implemented by Followups that can replace a task by a
// signature (followup's does): Replace sends sig in the task's place and
// returns the result tuples of what it sent.
type Replacer interface {
	Replace(ctx context.Context, msg *protocol.Message, sig protocol.Signature) ([]any, error)
}

// replace applies a task's replacement, as Celery's Task.replace then
// Ignore: the task stores no result and sends no follow-ups of its own
// (the replacement inherited them). A replacement that cannot be sent
// fails the task with the reason.
func (e *executor) replace(ctx context.Context, j *job, r *ReplaceError) {
	msg := j.msg
	rp, ok := e.followups.f.(Replacer)
	if !ok {
		exc := protocol.NewException("RuntimeError", "task replacement is not possible: the worker cannot publish")
		e.fail(ctx, j, exc, traceback(j.task.Name, exc), false, nil)
		return
	}
	if _, err := rp.Replace(ctx, msg, r.Sig); err != nil {
		exc := ToException(err)
		e.fail(ctx, j, exc, traceback(j.task.Name, exc), false, nil)
		return
	}
	e.log.Info(fmt.Sprintf("Task %s[%s] replaced by %s", msg.Name(), msg.ID, replacementName(r.Sig)),
		zap.String("id", msg.ID))
}

func replacementName(s protocol.Signature) string {
	if s.SubtaskType != "" {
		return s.SubtaskType
	}
	return s.Task
}

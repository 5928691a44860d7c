package worker

import (
	"fmt"

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
	name := r.Sig.Task
	if r.Sig.SubtaskType != "" {
		name = r.Sig.SubtaskType
	}
	return fmt.Sprintf("Replaced by new task (%s)", name)
}

// Replace returns the error that replaces the running task by sig.
func Replace(sig protocol.Signature) error { return &ReplaceError{Sig: sig} }

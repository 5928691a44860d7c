package result

import (
	"context"
	"time"
)

// State is a Celery task state.
type State string

// Task states as Celery names them.
const (
	Pending  State = "PENDING"
	Received State = "RECEIVED"
	Started  State = "STARTED"
	Success  State = "SUCCESS"
	Failure  State = "FAILURE"
	Retry    State = "RETRY"
	Revoked  State = "REVOKED"
)

// Ready reports whether the state is final (SUCCESS, FAILURE, REVOKED).
func (s State) Ready() bool { return s == Success || s == Failure || s == Revoked }

// Exceptional reports whether the result of the state is an exception.
func (s State) Exceptional() bool { return s == Failure || s == Retry || s == Revoked }

// Meta is a task's stored result, the value of celery-task-meta-<id>.
type Meta struct {
	TaskID string
	Status State
	// Result is the return value for SUCCESS, the exception dict (as a
	// decoded value) for FAILURE/RETRY/REVOKED, the meta for custom states.
	Result any
	// Traceback is the formatted traceback, or "" for null.
	Traceback string
	// Children are the tasks sent while the task ran: result tuples as
	// decoded, or Result values (EncodeMeta writes their tuples).
	Children []any
	// DateDone is nil for states that are not ready.
	DateDone *time.Time
	GroupID  string
	ParentID string

	// Extended fields, written when Extended is true (result_extended).
	Extended bool
	Name     string
	Args     []any
	Kwargs   map[string]any
	Worker   string
	Retries  int
	Queue    string
	// StampedHeaders and Stamps are the task's stamps (Celery 5.3+),
	// written after Queue as Celery 5.5 writes them: "stamped_headers",
	// then each stamp as a member of its own name.
	StampedHeaders []string
	Stamps         map[string]any

	// ReplyTo and CorrelationID come from the task message; the RPC
	// backend sends results there. Other backends ignore them.
	ReplyTo       string
	CorrelationID string
}

// Backend stores and reads task results.
type Backend interface {
	// Store writes a task's state. A stored SUCCESS is never overwritten.
	Store(ctx context.Context, m *Meta) error
	// Get returns the stored meta, or a PENDING meta when nothing is stored.
	Get(ctx context.Context, taskID string) (*Meta, error)
	// Forget deletes a task's result.
	Forget(ctx context.Context, taskID string) error
}

package result

import (
	"errors"
	"fmt"

	"github.com/gworker/gworker/protocol"
)

// Sentinel errors. Compare with errors.Is.
var (
	// ErrTimeout is returned when a wait given WithTimeout runs out
	// (Celery's TimeoutError).
	ErrTimeout = errors.New("The operation timed out.")

	// ErrNoBackend is returned when a result has no backend, or its backend
	// cannot do what was asked (for example Save on a backend that is not
	// a GroupStore).
	ErrNoBackend = errors.New("No result backend is configured. Please see the documentation for more information.")

	// ErrGroupNotFound is returned by GroupStore.RestoreGroup and
	// RestoreGroup when no group is saved under the id.
	ErrGroupNotFound = errors.New("group result not found")

	// ErrNotMember is returned by ResultSet.Remove for a result that is not
	// in the set (Celery's KeyError).
	ErrNotMember = errors.New("result not in set")

	// ErrBadTuple is wrapped by FromTuple errors for a value that is not a
	// result tuple.
	ErrBadTuple = errors.New("invalid result tuple")

	// ErrConvert is wrapped by As errors when a value cannot be converted
	// to the requested Go type.
	ErrConvert = errors.New("cannot convert result value")
)

// eWouldBlock is Celery's E_WOULDBLOCK, the text of the RuntimeError
// raised by result.get() inside a task.
const eWouldBlock = "Never call result.get() within a task!\n" +
	"See http://docs.celeryq.org/en/latest/userguide/tasks.html#task-synchronous-subtasks\n"

// ErrWouldBlock is returned by Get, Join and JoinNative when they are
// called inside a task (a context marked by MarkTask) without permission.
// Its text is exactly Celery's, and it implements protocol.PythonError, so
// a task that returns it fails with RuntimeError (module builtins), as a
// Python task would.
var ErrWouldBlock error = wouldBlockError{}

type wouldBlockError struct{}

func (wouldBlockError) Error() string { return eWouldBlock }

// PythonException returns RuntimeError(E_WOULDBLOCK).
func (wouldBlockError) PythonException() *protocol.Exception {
	return &protocol.Exception{Type: "RuntimeError", Module: "builtins", Args: []any{eWouldBlock}}
}

// TaskError is the error of a task that ended in FAILURE or REVOKED, as Get
// and Join report it. Unwrap returns the Python exception, so both
// errors.As(err, &taskErr) and errors.As(err, &pyExc) work.
type TaskError struct {
	TaskID string
	State  State
	// Exception is the stored exception; nil when the backend stored null
	// or a value that is not an exception dict.
	Exception *protocol.Exception
	Traceback string
}

func (e *TaskError) Error() string {
	what := "failed"
	if e.State == Revoked {
		what = "was revoked"
	}
	if e.Exception == nil {
		return fmt.Sprintf("task %s %s (%s)", e.TaskID, what, e.State)
	}
	return fmt.Sprintf("task %s %s: %s", e.TaskID, what, e.Exception.Error())
}

// Unwrap returns the Python exception (nil if there is none).
func (e *TaskError) Unwrap() error {
	if e.Exception == nil {
		return nil
	}
	return e.Exception
}

// PythonException returns the stored exception, so that a task that
// returns this error fails with the same Python exception, as a Python
// task that let the exception of get() escape would. A missing exception
// becomes builtins.Exception.
func (e *TaskError) PythonException() *protocol.Exception {
	if e.Exception != nil {
		return e.Exception
	}
	return &protocol.Exception{Type: "Exception", Module: "builtins", Args: []any{e.Error()}}
}

// taskError builds the TaskError of a ready, exceptional meta.
func taskError(m *Meta) *TaskError {
	te := &TaskError{TaskID: m.TaskID, State: m.Status, Traceback: m.Traceback}
	if m.Result != nil {
		if exc, err := exceptionOf(m.Result); err == nil {
			if exc.Traceback == "" {
				exc.Traceback = m.Traceback
			}
			te.Exception = exc
		}
	}
	return te
}

func exceptionOf(v any) (*protocol.Exception, error) {
	switch e := v.(type) {
	case *protocol.Exception:
		c := *e
		return &c, nil
	case protocol.Dict:
		return protocol.ExceptionFromValue(e.Map())
	}
	return protocol.ExceptionFromValue(v)
}

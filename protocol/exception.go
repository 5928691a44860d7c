package protocol

import (
	"errors"
	"fmt"
	"strings"
)

// Exception is a Python exception as Celery encodes it in results:
// {"exc_type", "exc_message", "exc_module"}. It is also a Go error, so a
// task can return one to choose the Python type its failure has.
type Exception struct {
	Type      string // class name, e.g. "KeyError"
	Module    string // e.g. "builtins"; "" encodes as null
	Args      []any  // exc.args
	Traceback string // optional formatted traceback
}

// NewException returns a builtins exception of the given type and args.
func NewException(typ string, args ...any) *Exception {
	if args == nil {
		args = []any{}
	}
	return &Exception{Type: typ, Module: "builtins", Args: args}
}

// Error returns Python's repr() of the exception: KeyError('boom'),
// ValueError('boom', 42), SoftTimeLimitExceeded().
func (e *Exception) Error() string { return formatException(e) }

// Is reports whether target is an *Exception of the same type: the same
// Type, and the same Module unless target's Module is empty. Args are not
// compared, so errors.Is(err, &Exception{Type: "KeyError"}) matches any
// KeyError.
func (e *Exception) Is(target error) bool {
	t, ok := target.(*Exception)
	if !ok || t == nil {
		return false
	}
	return t.Type == e.Type && (t.Module == "" || t.Module == e.Module)
}

// PythonException returns e itself, so *Exception is a PythonError.
func (e *Exception) PythonException() *Exception { return e }

func formatException(e *Exception) string {
	var b strings.Builder
	b.WriteString(e.Type)
	b.WriteByte('(')
	for i, a := range e.Args {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(PyRepr(a))
	}
	b.WriteByte(')')
	return b.String()
}

// Value returns the exception dict with Celery's key order.
func (e *Exception) Value() Dict {
	var mod any
	if e.Module != "" {
		mod = e.Module
	}
	args := e.Args
	if args == nil {
		args = []any{}
	}
	return Dict{{"exc_type", e.Type}, {"exc_message", args}, {"exc_module", mod}}
}

// ErrNotException is returned by ExceptionFromValue for a value that is
// not an exception dict.
var ErrNotException = errors.New("not an exception dict")

// ExceptionFromValue reads an exception dict {exc_type, exc_message,
// exc_module} as stored in a result (a map[string]any or a Dict).
// exc_message may be a list (the exception's args) or any single value
// (one arg, as Python calls cls(exc_message)); null gives no args.
// exc_module may be null. Errors wrap ErrNotException.
func ExceptionFromValue(v any) (*Exception, error) {
	var m map[string]any
	switch x := v.(type) {
	case map[string]any:
		m = x
	case Dict:
		m = x.Map()
	default:
		return nil, fmt.Errorf("%w: %T", ErrNotException, v)
	}
	typ, ok := m["exc_type"].(string)
	if !ok || typ == "" {
		return nil, fmt.Errorf("%w: exc_type missing or not a string", ErrNotException)
	}
	e := &Exception{Type: typ, Args: []any{}}
	switch mod := m["exc_module"].(type) {
	case nil:
	case string:
		e.Module = mod
	default:
		return nil, fmt.Errorf("%w: exc_module is %T", ErrNotException, mod)
	}
	switch msg := m["exc_message"].(type) {
	case nil:
	case []any:
		e.Args = msg
	default:
		e.Args = []any{msg}
	}
	return e, nil
}

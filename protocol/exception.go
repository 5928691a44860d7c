package protocol

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

// Error returns Python's repr-like text: KeyError('boom').
func (e *Exception) Error() string { return formatException(e) }

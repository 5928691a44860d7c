package protocol

// PythonError is implemented by errors that stand for a given Python
// exception. A worker stores a task failure caused by such an error with
// that exception's type, module and args, so Python clients see the same
// exception a Python worker would have stored.
type PythonError interface {
	PythonException() *Exception
}

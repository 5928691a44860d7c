package protocol

import "errors"

// Sentinel errors of message decoding. A *DecodeError wraps exactly one of
// them, so callers pick a disposition with errors.Is.
var (
	// ErrContentDisallowed: the content type is not accepted (pickle, yaml,
	// or a serializer not enabled). Celery: ContentDisallowed, reject.
	ErrContentDisallowed = errors.New("content disallowed")
	// ErrUnknownMessage: neither protocol v2 headers nor a v1 body.
	ErrUnknownMessage = errors.New("unknown message")
	// ErrDecode: the body (or its compression) cannot be decoded.
	ErrDecode = errors.New("cannot decode message body")
	// ErrInvalidTask: the message decodes but a field is invalid (body
	// shape, id, eta, expires, timelimit, args not a list, ...).
	ErrInvalidTask = errors.New("invalid task message")
	// ErrTooLarge: the body exceeds the configured limit after
	// decompression.
	ErrTooLarge = errors.New("message too large")
)

// ErrInvalidID is returned by CheckID (and wrapped by the DecodeError of a
// message whose task or group id fails it).
var ErrInvalidID = errors.New("invalid id")

// DecodeError tells why a message could not be turned into a task. ID and
// Task are filled when they could be read, so a caller can still store a
// FAILURE for the task; ID is only ever a valid id (see CheckID): an id
// that fails the check is left out, so that nothing is written under it.
type DecodeError struct {
	Kind   error  // one of the sentinels above
	Reason string // short reason code, e.g. "body-not-list", "bad-eta"
	ID     string
	Task   string
	Err    error // underlying error, may be nil
}

func (e *DecodeError) Error() string {
	msg := e.Kind.Error() + ": " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the sentinel and the underlying error.
func (e *DecodeError) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Kind}
}

func decodeErr(kind error, reason string, err error) *DecodeError {
	return &DecodeError{Kind: kind, Reason: reason, Err: err}
}

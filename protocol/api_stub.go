package protocol

// This file lists the package API that is still being written; each
// function moves to its own file as it is implemented.

import (
	"errors"
	"time"
)

var errTODO = errors.New("not implemented yet")

// DecodeOptions configures Decode. The zero value accepts JSON only and
// caps bodies at DefaultMaxBodySize.
type DecodeOptions struct {
	// Accept lists accepted content types; empty means JSON only.
	// application/data and application/text are never accepted as tasks.
	Accept []string
	// MaxBodySize caps the body after decompression (0: DefaultMaxBodySize).
	MaxBodySize int
}

// DefaultMaxBodySize is the default cap of a decompressed body: 16 MiB.
const DefaultMaxBodySize = 16 << 20

// Decode turns a delivered message into a task, whatever the protocol.
// Errors are *DecodeError.
func Decode(raw *RawMessage, opts DecodeOptions) (*Message, error) { return nil, errTODO }

// EncodeOptions configures Encode.
type EncodeOptions struct {
	// Serializer is "json" (default) or "msgpack".
	Serializer string
	// Compression is "" or "zlib" (header application/x-gzip, zlib stream).
	Compression string
}

// Encode builds a protocol-v2 message as Celery 5.2.6 publishes it: the 16
// headers in Celery's order plus custom ones from m.Headers, properties,
// and the [args, kwargs, embed] body.
func Encode(m *Message, opts EncodeOptions) (*RawMessage, error) { return nil, errTODO }

// FormatTime formats t as Python's isoformat() does for an aware UTC
// datetime: 6 fractional digits (none when the microseconds are 0) and
// "+00:00".
func FormatTime(t time.Time) string { return "" }

// ParseTime parses an ISO 8601 time as Celery writes it (fraction of 0 or
// 6 digits, "Z", "+HH:MM" or naive = UTC).
func ParseTime(s string) (time.Time, error) { return time.Time{}, errTODO }

func formatException(e *Exception) string { return e.Type }

// ExceptionFromValue reads an exception dict {exc_type, exc_message,
// exc_module} as stored in a result.
func ExceptionFromValue(v any) (*Exception, error) { return nil, errTODO }

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

// SignatureFromValue reads a signature from its decoded dict form.
func SignatureFromValue(v any) (Signature, error) { return Signature{}, errTODO }

// Package protocol holds Celery's wire formats: task messages of protocol
// v2 and v1, the JSON and msgpack serializers with Python's types kept,
// compression, signatures and the exception encoding used in results.
//
// The package is pure: it performs no I/O and every other package imports it.
//
// # Values
//
// Decoded Python values use this closed set of Go types, and the encoders
// accept them back unchanged:
//
//	None              nil
//	bool              bool
//	int               int64, or *big.Int outside the int64 range
//	float             float64 (NaN and ±Inf included)
//	str               string
//	bytes             []byte (msgpack bin only; JSON has no bytes)
//	list, tuple       []any
//	dict              map[string]any (decoding), or Dict to keep key order
//
// The encoders also accept other Go integers and floats, time.Time, Dict,
// typed slices and maps, and structs (through their encoding/json form).
//
// # Messages
//
// Decode reads what a transport delivered (a RawMessage) into a Message,
// whatever the protocol (v2, v1 or a hybrid), and Encode writes a Message
// as Celery 5.2.6 publishes protocol v2. Decoding refuses what a Celery
// worker would crash on or silently misread, with a *DecodeError whose
// sentinel (ErrContentDisallowed, ErrUnknownMessage, ErrDecode,
// ErrInvalidTask, ErrTooLarge) tells the caller what to do and whose ID
// and Task say which task to fail.
//
// MarshalJSON and UnmarshalJSON are the JSON codec of the whole project:
// Python's json module on both sides, byte for byte.
package protocol

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
// One rule converts between these values and arbitrary Go values, in both
// directions, for the whole project. FromGo (which both encoders apply)
// writes any Go value as Python would hold it: every integer kind an int,
// every float kind a float (float64(6) is 6.0, also inside structs, slices,
// maps and behind pointers), structs as dicts by their json tags,
// json.Marshaler and encoding.TextMarshaler types by their methods,
// time.Time as kombu's ISO 8601 string. ToGo reads a value into a Go type,
// the rule of task arguments and of result.As: an int takes 3 or 3.0 and
// refuses 2.5, a struct takes a dict by the names FromGo writes. HeaderValue
// is the same rule for message headers, within what a header table carries.
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

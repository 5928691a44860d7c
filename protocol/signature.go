package protocol

import (
	"fmt"
	"math/big"
)

// Signature is a task signature (Celery's "subtask") in its dict form:
// {task, args, kwargs, options, subtask_type, immutable}. Canvas objects
// (chain, group, chord) are signatures whose SubtaskType says so.
type Signature struct {
	Task        string
	Args        []any
	Kwargs      map[string]any
	Options     map[string]any
	SubtaskType string // "" (None), "chain", "group", "chord", ...
	Immutable   bool
}

// Value returns the signature as a Dict with Celery's key order.
func (s *Signature) Value() Dict {
	var st any
	if s.SubtaskType != "" {
		st = s.SubtaskType
	}
	args := s.Args
	if args == nil {
		args = []any{}
	}
	kwargs := s.Kwargs
	if kwargs == nil {
		kwargs = map[string]any{}
	}
	opts := s.Options
	if opts == nil {
		opts = map[string]any{}
	}
	return Dict{
		{"task", s.Task},
		{"args", args},
		{"kwargs", kwargs},
		{"options", opts},
		{"subtask_type", st},
		{"immutable", s.Immutable},
	}
}

// SignatureFromValue reads a signature from its decoded dict form (a
// map[string]any or a Dict), as found in embed callbacks, errbacks, chain
// and chord, in options.link and in chord_unlock arguments. Missing keys
// take their defaults (no args, no kwargs, empty options, subtask_type
// None, immutable false); keys other than the six of a signature (such as
// chord_size) are ignored. A key of the wrong type is an error.
func SignatureFromValue(v any) (Signature, error) {
	var m map[string]any
	switch x := v.(type) {
	case map[string]any:
		m = x
	case Dict:
		m = x.Map()
	case Signature:
		return x, nil
	case *Signature:
		if x != nil {
			return *x, nil
		}
		return Signature{}, fmt.Errorf("signature is nil")
	default:
		return Signature{}, fmt.Errorf("signature is %s, not an object", typeName(v))
	}
	var s Signature
	switch t := m["task"].(type) {
	case string:
		s.Task = t
	case nil:
	default:
		return Signature{}, fmt.Errorf("signature task is %s, not a string", typeName(t))
	}
	switch a := m["args"].(type) {
	case []any:
		s.Args = a
	case nil:
		s.Args = []any{}
	default:
		return Signature{}, fmt.Errorf("signature %q: args is %s, not a list", s.Task, typeName(a))
	}
	var err error
	if s.Kwargs, err = objectOrEmpty(m["kwargs"]); err != nil {
		return Signature{}, fmt.Errorf("signature %q: kwargs: %w", s.Task, err)
	}
	if s.Options, err = objectOrEmpty(m["options"]); err != nil {
		return Signature{}, fmt.Errorf("signature %q: options: %w", s.Task, err)
	}
	switch st := m["subtask_type"].(type) {
	case string:
		s.SubtaskType = st
	case nil:
	default:
		return Signature{}, fmt.Errorf("signature %q: subtask_type is %s, not a string", s.Task, typeName(st))
	}
	switch im := m["immutable"].(type) {
	case bool:
		s.Immutable = im
	case nil:
	default:
		return Signature{}, fmt.Errorf("signature %q: immutable is %s, not a bool", s.Task, typeName(im))
	}
	return s, nil
}

func objectOrEmpty(v any) (map[string]any, error) {
	switch x := v.(type) {
	case map[string]any:
		return x, nil
	case Dict:
		return x.Map(), nil
	case nil:
		return map[string]any{}, nil
	}
	return nil, fmt.Errorf("%s, not an object", typeName(v))
}

// typeName names a value's type in Python's terms for error messages.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a bool"
	case string:
		return "a string"
	case int64, int, int32, *big.Int:
		return "an int"
	case float64:
		return "a float"
	case []any:
		return "a list"
	case map[string]any, Dict:
		return "an object"
	case []byte:
		return "bytes"
	}
	return fmt.Sprintf("%T", v)
}

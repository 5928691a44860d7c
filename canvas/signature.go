package canvas

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// Errors of the package; test with errors.Is.
var (
	// ErrInvalidSignature: a signature (built, or read from a message) is
	// malformed: no task name, tasks not a list, a chord without body, ...
	ErrInvalidSignature = errors.New("invalid signature")
	// ErrChordNotSupported: the producer's backend cannot count chord
	// parts (it is not a result.ChordBackend), so a chord cannot run.
	ErrChordNotSupported = errors.New("result backend does not support chords")
	// ErrEmptyCanvas: a chain or group without tasks.
	ErrEmptyCanvas = errors.New("canvas has no tasks")
)

// Subtask types of canvas signatures.
const (
	TypeChain = "chain"
	TypeGroup = "group"
	TypeChord = "chord"
)

// Signature is a task signature (Celery's "subtask"): the wire form
// protocol.Signature plus builders. Builder methods return a modified copy
// and never change the receiver, so a signature can be reused.
type Signature struct {
	protocol.Signature
}

// Sig returns the signature of task with partial args (Celery's
// task.s(*args)).
func Sig(task string, args ...any) *Signature {
	if args == nil {
		args = []any{}
	}
	return &Signature{protocol.Signature{Task: task, Args: args, Kwargs: map[string]any{}, Options: map[string]any{}}}
}

// Si returns an immutable signature (Celery's task.si(*args)): the parent's
// result is not prepended to its args.
func Si(task string, args ...any) *Signature {
	s := Sig(task, args...)
	s.Signature.Immutable = true
	return s
}

// FromProtocol wraps a wire signature.
func FromProtocol(s protocol.Signature) *Signature { return &Signature{cloneSig(s)} }

// Clone returns a copy whose args, kwargs and options can be changed
// without touching s.
func (s *Signature) Clone() *Signature { return &Signature{cloneSig(s.Signature)} }

// WithKwargs returns a copy with kw merged into the partial kwargs.
func (s *Signature) WithKwargs(kw map[string]any) *Signature {
	c := s.Clone()
	maps.Copy(c.Kwargs, kw)
	return c
}

// Set returns a copy with Celery execution options set (Celery's
// sig.set(**options)): "queue", "countdown", "expires", "priority",
// "link", "headers", ... as apply_async takes them.
func (s *Signature) Set(options map[string]any) *Signature {
	c := s.Clone()
	maps.Copy(c.Options, options)
	return c
}

// Immutable returns an immutable copy (Celery's sig.set(immutable=True)).
func (s *Signature) Immutable() *Signature {
	c := s.Clone()
	c.Signature.Immutable = true
	return c
}

// Link returns a copy with callback added to options["link"].
func (s *Signature) Link(callback *Signature) *Signature {
	c := s.Clone()
	c.Options["link"] = appendSigList(c.Options["link"], callback.Signature)
	return c
}

// LinkError returns a copy with errback added to options["link_error"].
func (s *Signature) LinkError(errback *Signature) *Signature {
	c := s.Clone()
	c.Options["link_error"] = appendSigList(c.Options["link_error"], errback.Signature)
	return c
}

// Value returns the signature's dict form with Celery's key order.
func (s *Signature) Value() protocol.Dict { return sigValue(s.Signature) }

// ApplyAsync sends the signature as a task. opts are producer options that
// override the signature's own options; they are accepted for plain task
// signatures only (use the ApplyAsync of Group, Chain and Chord for
// those). For a canvas signature (subtask_type chain, group or chord) the
// returned result is the canvas' final result: the last task of a chain,
// the body of a chord, and a result whose id is the group id for a group.
func (s *Signature) ApplyAsync(ctx context.Context, p *producer.Producer, opts ...producer.Option) (*result.AsyncResult, error) {
	return s.apply(ctx, p, nil, opts)
}

// Delay sends the signature with args prepended to its partial args
// (Celery's sig.delay(*args)).
func (s *Signature) Delay(ctx context.Context, p *producer.Producer, args ...any) (*result.AsyncResult, error) {
	return s.apply(ctx, p, args, nil)
}

func (s *Signature) apply(ctx context.Context, p *producer.Producer, partial []any, opts []producer.Option) (*result.AsyncResult, error) {
	switch s.SubtaskType {
	case TypeChain, TypeGroup, TypeChord:
		if len(opts) > 0 {
			return nil, fmt.Errorf("%w: producer options apply to plain task signatures; set options on the %s with Set", ErrInvalidSignature, s.SubtaskType)
		}
	}
	// Other subtask types (xmap, xstarmap, chunks) are builtin tasks of a
	// Python worker and are sent as plain tasks.
	a := applier{p: p, extra: opts}
	n, err := a.apply(ctx, s.Signature, partial, nil)
	if err != nil {
		return nil, err
	}
	return n.asyncResult(p.Backend()), nil
}

func appendSigList(v any, s protocol.Signature) []any {
	var out []any
	switch x := v.(type) {
	case nil:
	case []any:
		out = append(out, x...)
	default:
		out = append(out, x)
	}
	return append(out, sigValue(s))
}

// cloneSig copies a signature's containers (one level deep).
func cloneSig(s protocol.Signature) protocol.Signature {
	c := s
	c.Args = append([]any{}, s.Args...)
	c.Kwargs = make(map[string]any, len(s.Kwargs))
	maps.Copy(c.Kwargs, s.Kwargs)
	c.Options = make(map[string]any, len(s.Options))
	maps.Copy(c.Options, s.Options)
	return c
}

// sigValue is the dict form of a signature with nested signatures in its
// options turned into dicts too, so encoders see only plain values.
func sigValue(s protocol.Signature) protocol.Dict {
	return s.Value()
}

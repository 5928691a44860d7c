package canvas

import (
	"context"
	"fmt"
	"maps"

	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// GroupSig is a group: tasks run in parallel, their results collected in a
// GroupResult.
type GroupSig struct {
	Tasks []*Signature
	// Options are Celery options applied to every member (for example
	// "queue"); "task_id" sets the group id.
	Options map[string]any
}

// Group returns a group of sigs.
func Group(sigs ...*Signature) *GroupSig {
	return &GroupSig{Tasks: sigs, Options: map[string]any{}}
}

// Signature returns the group as a celery.group signature, the form used
// inside chains, callbacks and chords.
func (g *GroupSig) Signature() *Signature {
	s := groupSig(protosOf(g.Tasks))
	s.Options = maps.Clone(g.Options)
	if s.Options == nil {
		s.Options = map[string]any{}
	}
	return &Signature{s}
}

// ApplyAsync sends every member with the group id in its "group" header
// and returns the group's result.
func (g *GroupSig) ApplyAsync(ctx context.Context, p *producer.Producer) (*result.GroupResult, error) {
	if len(g.Tasks) == 0 {
		return nil, fmt.Errorf("%w: empty group", ErrEmptyCanvas)
	}
	if err := checkSigs(g.Tasks); err != nil {
		return nil, err
	}
	a := applier{p: p}
	n, err := a.applyGroup(ctx, g.Signature().Signature, nil, nil)
	if err != nil {
		return nil, err
	}
	return n.groupResult(p.Backend()), nil
}

// ChainSig is a chain: each task runs after the previous one succeeded,
// with its result prepended to its args (unless immutable).
type ChainSig struct {
	Tasks []*Signature
	// Options are Celery options given to the first task, except
	// "task_id", which sets the id of the last task (the chain's result).
	Options map[string]any
}

// Chain returns a chain of sigs. A GroupSig's Signature followed by a task
// becomes a chord, as in Celery.
func Chain(sigs ...*Signature) *ChainSig {
	return &ChainSig{Tasks: sigs, Options: map[string]any{}}
}

// Signature returns the chain as a celery.chain signature.
func (c *ChainSig) Signature() *Signature {
	opts := maps.Clone(c.Options)
	if opts == nil {
		opts = map[string]any{}
	}
	return &Signature{protocol.Signature{
		Task:        "celery.chain",
		Args:        []any{},
		Kwargs:      map[string]any{"tasks": sigValues(protosOf(c.Tasks))},
		Options:     opts,
		SubtaskType: TypeChain,
	}}
}

// ApplyAsync sends the first task with embed.chain holding the others,
// frozen and reversed, and returns the last task's result; its Parent
// chain leads back to the first task.
func (c *ChainSig) ApplyAsync(ctx context.Context, p *producer.Producer) (*result.AsyncResult, error) {
	if len(c.Tasks) == 0 {
		return nil, fmt.Errorf("%w: empty chain", ErrEmptyCanvas)
	}
	if err := checkSigs(c.Tasks); err != nil {
		return nil, err
	}
	a := applier{p: p}
	n, err := a.applyChain(ctx, c.Signature().Signature, nil, nil)
	if err != nil {
		return nil, err
	}
	return n.asyncResult(p.Backend()), nil
}

// ChordSig is a chord: the header tasks run in parallel, then the body
// runs with the list of their results.
type ChordSig struct {
	Header []*Signature
	Body   *Signature
	// Options are Celery options given to the body and the header
	// messages; "task_id" sets the body's id.
	Options map[string]any
}

// Chord returns a chord of header and body.
func Chord(header []*Signature, body *Signature) *ChordSig {
	return &ChordSig{Header: header, Body: body, Options: map[string]any{}}
}

// Signature returns the chord as a celery.chord signature.
func (c *ChordSig) Signature() *Signature {
	opts := maps.Clone(c.Options)
	if opts == nil {
		opts = map[string]any{}
	}
	var body any
	if c.Body != nil {
		body = sigValue(c.Body.Signature)
	}
	return &Signature{protocol.Signature{
		Task: "celery.chord",
		Args: []any{},
		Kwargs: map[string]any{
			"kwargs": map[string]any{},
			"header": sigValue(groupSig(protosOf(c.Header))),
			"body":   body,
		},
		Options:     opts,
		SubtaskType: TypeChord,
	}}
}

// ApplyAsync runs the chord: it needs a producer whose backend is a
// result.ChordBackend (Redis), or a result.ChordPoller (Celery's database
// tables), for which celery.chord_unlock is sent as Celery does;
// ErrChordNotSupported otherwise. The returned result is the body's; its
// parent is the header's GroupResult.
func (c *ChordSig) ApplyAsync(ctx context.Context, p *producer.Producer) (*result.AsyncResult, error) {
	if c.Body == nil {
		return nil, fmt.Errorf("%w: chord without body", ErrInvalidSignature)
	}
	if err := checkSigs(append([]*Signature{c.Body}, c.Header...)); err != nil {
		return nil, err
	}
	a := applier{p: p}
	n, err := a.applyChord(ctx, c.Signature().Signature, nil, nil)
	if err != nil {
		return nil, err
	}
	return n.asyncResult(p.Backend()), nil
}

func protosOf(sigs []*Signature) []protocol.Signature {
	out := make([]protocol.Signature, len(sigs))
	for i, s := range sigs {
		if s != nil {
			out[i] = s.Signature
		}
	}
	return out
}

func checkSigs(sigs []*Signature) error {
	for i, s := range sigs {
		if s == nil {
			return fmt.Errorf("%w: signature %d is nil", ErrInvalidSignature, i)
		}
		if s.Task == "" {
			return fmt.Errorf("%w: signature %d has no task name", ErrInvalidSignature, i)
		}
	}
	return nil
}

package result

import (
	"context"
	"fmt"
)

// Result is a task result or a group of them: *AsyncResult or *GroupResult.
// The checks query the backend.
type Result interface {
	// ID is the task id or the group id.
	ID() string
	// AsTuple returns Celery's result tuple: [[id, parent], null] for a
	// task, [[group_id, parent], [children...]] for a group.
	AsTuple() any
	Ready(ctx context.Context) (bool, error)
	Successful(ctx context.Context) (bool, error)
	Failed(ctx context.Context) (bool, error)
	// Forget removes the stored result(s).
	Forget(ctx context.Context) error
}

var (
	_ Result = (*AsyncResult)(nil)
	_ Result = (*GroupResult)(nil)
)

// FromTuple rebuilds a result from its tuple form, as Celery's
// result_from_tuple does: [[id, parent], null] gives an *AsyncResult,
// [[gid, parent], [children...]] a *GroupResult (children rebuilt
// recursively). A plain string in place of [id, parent] is accepted as the
// id. Every rebuilt result uses backend b.
func FromTuple(v any, b Backend) (Result, error) {
	return fromTuple(v, b, 0)
}

const maxTupleDepth = 1000

func fromTuple(v any, b Backend, depth int) (Result, error) {
	if depth > maxTupleDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", ErrBadTuple, maxTupleDepth)
	}
	if r, ok := v.(Result); ok {
		return r, nil
	}
	pair, ok := v.([]any)
	if !ok || len(pair) != 2 {
		return nil, fmt.Errorf("%w: want [res, nodes], got %s", ErrBadTuple, pyType(v))
	}
	var id string
	var parent Result
	switch res := pair[0].(type) {
	case string:
		id = res
	case []any:
		if len(res) != 2 {
			return nil, fmt.Errorf("%w: want [id, parent], got a list of %d", ErrBadTuple, len(res))
		}
		s, ok := res[0].(string)
		if !ok {
			return nil, fmt.Errorf("%w: id is %s, not a string", ErrBadTuple, pyType(res[0]))
		}
		id = s
		if res[1] != nil {
			p, err := fromTuple(res[1], b, depth+1)
			if err != nil {
				return nil, fmt.Errorf("parent of %s: %w", id, err)
			}
			parent = p
		}
	default:
		return nil, fmt.Errorf("%w: want [id, parent] or id, got %s", ErrBadTuple, pyType(pair[0]))
	}
	if id == "" {
		return nil, fmt.Errorf("%w: empty id", ErrBadTuple)
	}
	if pair[1] == nil {
		r := NewAsyncResult(id, b)
		r.parent = parent
		return r, nil
	}
	nodes, ok := pair[1].([]any)
	if !ok {
		return nil, fmt.Errorf("%w: children of group %s are %s, not a list", ErrBadTuple, id, pyType(pair[1]))
	}
	children := make([]Result, len(nodes))
	for i, n := range nodes {
		c, err := fromTuple(n, b, depth+1)
		if err != nil {
			return nil, fmt.Errorf("child %d of group %s: %w", i, id, err)
		}
		children[i] = c
	}
	g := NewGroupResult(id, b, children...)
	g.parent = parent
	return g, nil
}

func parentTuple(p Result) any {
	if isNil(p) {
		return nil
	}
	return p.AsTuple()
}

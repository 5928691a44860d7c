package result

import (
	"context"
	"fmt"
)

// GroupResult is the result of a group, Celery's GroupResult: a ResultSet
// with an id that can be saved to and restored from a backend that is a
// GroupStore.
type GroupResult struct {
	*ResultSet
	id      string
	parent  Result
	backend Backend
}

// NewGroupResult returns the result of group id, made of results, stored in
// backend b (nil: Save, Delete and RestoreGroup return ErrNoBackend).
func NewGroupResult(id string, b Backend, results ...Result) *GroupResult {
	return &GroupResult{ResultSet: NewResultSet(results...), id: id, backend: b}
}

// ID returns the group id.
func (g *GroupResult) ID() string { return g.id }

// String returns the group id.
func (g *GroupResult) String() string { return g.id }

// Parent returns the result that came before the group in a chain, or nil.
func (g *GroupResult) Parent() Result { return g.parent }

// SetParent sets the parent result.
func (g *GroupResult) SetParent(p Result) { g.parent = p }

// Backend returns the group's backend (may be nil).
func (g *GroupResult) Backend() Backend { return g.backend }

// Children returns the members, as Celery's GroupResult.children.
func (g *GroupResult) Children() []Result { return g.Results() }

// AsTuple returns [[id, parent tuple or nil], [member tuples...]].
func (g *GroupResult) AsTuple() any {
	nodes := make([]any, len(g.results))
	for i, r := range g.results {
		nodes[i] = r.AsTuple()
	}
	return []any{[]any{g.id, parentTuple(g.parent)}, nodes}
}

func (g *GroupResult) store() (GroupStore, error) {
	if g.backend == nil {
		return nil, ErrNoBackend
	}
	gs, ok := g.backend.(GroupStore)
	if !ok {
		return nil, fmt.Errorf("backend %T cannot store groups: %w", g.backend, ErrNoBackend)
	}
	return gs, nil
}

// Save stores the group so that RestoreGroup (or Python's
// GroupResult.restore) can rebuild it from its id.
func (g *GroupResult) Save(ctx context.Context) error {
	gs, err := g.store()
	if err != nil {
		return err
	}
	return gs.SaveGroup(ctx, g.id, g.AsTuple())
}

// Delete removes the saved group (the members' results stay).
func (g *GroupResult) Delete(ctx context.Context) error {
	gs, err := g.store()
	if err != nil {
		return err
	}
	return gs.DeleteGroup(ctx, g.id)
}

// RestoreGroup rebuilds a group saved under id, by Go or by Python, nested
// groups and chain parents included. It returns an error wrapping
// ErrGroupNotFound when nothing is saved, and ErrNoBackend when b is nil or
// not a GroupStore.
func RestoreGroup(ctx context.Context, b Backend, id string) (*GroupResult, error) {
	if b == nil {
		return nil, ErrNoBackend
	}
	gs, ok := b.(GroupStore)
	if !ok {
		return nil, fmt.Errorf("backend %T cannot store groups: %w", b, ErrNoBackend)
	}
	t, err := gs.RestoreGroup(ctx, id)
	if err != nil {
		return nil, err
	}
	r, err := FromTuple(t, b)
	if err != nil {
		return nil, fmt.Errorf("saved group %s: %w", id, err)
	}
	g, ok := r.(*GroupResult)
	if !ok {
		return nil, fmt.Errorf("saved group %s: %w: holds a task result, not a group", id, ErrBadTuple)
	}
	return g, nil
}

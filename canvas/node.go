package canvas

import (
	"github.com/gworker/gworker/result"
)

// node is the frozen result of something the applier sent or froze: a task
// id or a group id with its members, and the result that comes before it
// in a chain.
type node struct {
	id       string
	group    bool
	children []*node
	parent   *node
}

// tuple returns Celery's result tuple of the node: [[id, parent], null] for
// a task, [[gid, parent], [children...]] for a group.
func (n *node) tuple() []any {
	var parent any
	if n.parent != nil {
		parent = n.parent.tuple()
	}
	head := []any{n.id, parent}
	if !n.group {
		return []any{head, nil}
	}
	kids := make([]any, len(n.children))
	for i, c := range n.children {
		kids[i] = c.tuple()
	}
	return []any{head, kids}
}

func (n *node) root() *node {
	for n.parent != nil {
		n = n.parent
	}
	return n
}

// result builds the result objects of the node on backend b.
func (n *node) result(b result.Backend) result.Result {
	if n.group {
		kids := make([]result.Result, len(n.children))
		for i, c := range n.children {
			kids[i] = c.result(b)
		}
		g := result.NewGroupResult(n.id, b, kids...)
		if n.parent != nil {
			g.SetParent(n.parent.result(b))
		}
		return g
	}
	r := result.NewAsyncResult(n.id, b)
	if n.parent != nil {
		r.SetParent(n.parent.result(b))
	}
	return r
}

func (n *node) asyncResult(b result.Backend) *result.AsyncResult {
	if r, ok := n.result(b).(*result.AsyncResult); ok {
		return r
	}
	r := result.NewAsyncResult(n.id, b)
	if n.parent != nil {
		r.SetParent(n.parent.result(b))
	}
	return r
}

func (n *node) groupResult(b result.Backend) *result.GroupResult {
	if g, ok := n.result(b).(*result.GroupResult); ok {
		return g
	}
	return result.NewGroupResult(n.id, b, n.result(b))
}

package canvas

import (
	"context"
	"fmt"

	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// ApplyOptions are the apply_async options a worker adds when it applies a
// signature taken from a task message.
type ApplyOptions struct {
	// ParentID is the id of the task whose message carried the signature;
	// RootID is that task's root_id (or its id).
	ParentID, RootID string
	// Chain, when not nil, becomes the sent task's embed.chain: the rest
	// of the chain, still in wire order (next task LAST). An empty non-nil
	// slice is sent as [] (Celery does so for the last chain element).
	Chain []protocol.Signature
	// GroupID is given to the sent task unless its signature already has
	// a group_id (Celery never replaces one).
	GroupID string
	// Priority, when not nil, overrides the signature's priority
	// (Celery's task_inherit_parent_priority).
	Priority *int
	// Options are further Celery options merged over the signature's.
	Options map[string]any
}

func (o ApplyOptions) celery() map[string]any {
	m := make(map[string]any, len(o.Options)+5)
	for k, v := range o.Options {
		m[k] = v
	}
	if o.ParentID != "" {
		m["parent_id"] = o.ParentID
	}
	if o.RootID != "" {
		m["root_id"] = o.RootID
	}
	if o.Chain != nil {
		m["chain"] = sigValues(o.Chain)
	}
	if o.GroupID != "" {
		m["group_id"] = o.GroupID
	}
	if o.Priority != nil {
		m["priority"] = int64(*o.Priority)
	}
	return m
}

// ApplyFromMessage applies a signature taken from a task message's embed (a
// callback, errback, chain element or chord body) as Celery's worker does:
//
//   - partialArgs are prepended to the signature's args unless it is
//     immutable;
//   - options: the signature's, overridden by opts (a group_id already
//     present is kept);
//   - options become message fields: task_id (id, else a new one), queue /
//     exchange / routing_key, countdown / eta, expires, priority,
//     time_limit / soft_time_limit, link / link_error (callbacks /
//     errbacks), chain, chord, group_id / group_index, shadow, headers,
//     reply_to, root_id / parent_id;
//   - subtask_type "chain" sends its first task with the rest as
//     embed.chain; "group" sends every member under one new group id (or
//     the group's own task_id); "chord" writes the chord size and sends the
//     header parts with embed.chord (the producer's backend must be a
//     result.ChordBackend); any other type is sent as a plain task.
//
// It returns the result tuples of what it sent (one per call: a task, the
// last task of a chain, a group, or a chord body with its header as
// parent), for the running task's "children".
func ApplyFromMessage(ctx context.Context, p *producer.Producer, sig protocol.Signature, partialArgs []any, opts ApplyOptions) (children []any, err error) {
	a := applier{p: p}
	n, err := a.apply(ctx, cloneSig(sig), partialArgs, opts.celery())
	if err != nil {
		return nil, err
	}
	return []any{n.tuple()}, nil
}

// ApplyCallbacks sends a succeeded task's link callbacks with its return
// value prepended, following Celery's rule: one callback is sent alone;
// with more, every group callback is applied on its own and the other
// callbacks are sent together as one group (each then carries a group
// header). Set opts.ParentID to the task id and opts.RootID to its root.
func ApplyCallbacks(ctx context.Context, p *producer.Producer, callbacks []protocol.Signature, retval any, opts ApplyOptions) ([]any, error) {
	switch len(callbacks) {
	case 0:
		return nil, nil
	case 1:
		return ApplyFromMessage(ctx, p, callbacks[0], []any{retval}, opts)
	}
	var children []any
	var plain []protocol.Signature
	for _, cb := range callbacks {
		if cb.SubtaskType == TypeGroup {
			c, err := ApplyFromMessage(ctx, p, cb, []any{retval}, opts)
			if err != nil {
				return children, err
			}
			children = append(children, c...)
			continue
		}
		plain = append(plain, cb)
	}
	if len(plain) > 0 {
		c, err := ApplyFromMessage(ctx, p, groupSig(plain), []any{retval}, opts)
		if err != nil {
			return children, err
		}
		children = append(children, c...)
	}
	return children, nil
}

// ApplyErrbacks sends a failed task's errbacks as Celery sends "old style"
// errbacks: together as one group, with the failed task's id prepended to
// their args, parent_id = that id. Celery runs errbacks whose function
// takes (request, exc, traceback) inline instead: a worker's Followups
// first take those registered with worker.RegisterErrback out
// (worker.CallInlineErrbacks) and send the others here.
func ApplyErrbacks(ctx context.Context, p *producer.Producer, errbacks []protocol.Signature, failedTaskID string, opts ApplyOptions) ([]any, error) {
	if len(errbacks) == 0 {
		return nil, nil
	}
	if opts.ParentID == "" {
		opts.ParentID = failedTaskID
	}
	return ApplyFromMessage(ctx, p, groupSig(errbacks), []any{failedTaskID}, opts)
}

// ApplyChainNext sends the next task of a chain after a task succeeded:
// the LAST element of chain, with retval prepended to its args and the
// remaining elements as its embed.chain. It returns no children when chain
// is empty.
func ApplyChainNext(ctx context.Context, p *producer.Producer, chain []protocol.Signature, retval any, opts ApplyOptions) ([]any, error) {
	if len(chain) == 0 {
		return nil, nil
	}
	next := chain[len(chain)-1]
	opts.Chain = append([]protocol.Signature{}, chain[:len(chain)-1]...)
	return ApplyFromMessage(ctx, p, next, []any{retval}, opts)
}

// ApplyInTask sends sig from inside a running task, as Celery's
// apply_async does in a worker: the sent tasks get the running task's id
// as parent_id and its root_id (or id) as root_id unless sig sets them,
// and the result is recorded among the running task's children. Outside a
// task it is sig.ApplyAsync.
func ApplyInTask(ctx context.Context, p *producer.Producer, sig *Signature) (*result.AsyncResult, error) {
	req, inTask := worker.RequestFromContext(ctx)
	if !inTask {
		return sig.ApplyAsync(ctx, p)
	}
	c := sig.Clone()
	if _, ok := c.Options["parent_id"]; !ok {
		c.Options["parent_id"] = req.ID
	}
	if _, ok := c.Options["root_id"]; !ok {
		root := req.RootID
		if root == "" {
			root = req.ID
		}
		c.Options["root_id"] = root
	}
	res, err := c.ApplyAsync(ctx, p)
	if err != nil {
		return nil, err
	}
	req.AddChild(res.AsTuple())
	return res, nil
}

// AddToChord adds sig to the chord the running task is a header part of,
// as Celery's task.add_to_chord: sig takes the task's group, group index,
// chord body and root id, the backend (a result.ChordExtender: Redis)
// counts one more part, and sig is sent with the task as parent. The
// chord body then waits for sig's result too. Outside such a task it
// returns Python's ValueError("Current task is not member of any chord")
// as a *protocol.Exception; on a backend that cannot grow a chord, an
// error wrapping ErrChordNotSupported.
func AddToChord(ctx context.Context, p *producer.Producer, sig *Signature) (*result.AsyncResult, error) {
	req, inTask := worker.RequestFromContext(ctx)
	if !inTask || req.Message == nil || req.Message.Chord == nil || req.GroupID == "" {
		return nil, protocol.NewException("ValueError", "Current task is not member of any chord")
	}
	ext, ok := p.Backend().(result.ChordExtender)
	if !ok {
		return nil, fmt.Errorf("add_to_chord: %w (the result backend cannot grow a chord)", ErrChordNotSupported)
	}
	c := sig.Clone()
	c.Options["group_id"] = req.GroupID
	if req.GroupIndex != nil {
		c.Options["group_index"] = int64(*req.GroupIndex)
	}
	c.Options["chord"] = sigValue(*req.Message.Chord)
	root := req.RootID
	if root == "" {
		root = req.ID
	}
	c.Options["root_id"] = root
	c.Options["parent_id"] = req.ID
	if err := ext.AddToChord(ctx, req.GroupID); err != nil {
		return nil, err
	}
	res, err := c.ApplyAsync(ctx, p)
	if err != nil {
		return nil, err
	}
	req.AddChild(res.AsTuple())
	return res, nil
}

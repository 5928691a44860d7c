package canvas

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// applier sends signatures the way Celery's canvas does. extra options
// apply to the plain task sends of a top-level ApplyAsync.
type applier struct {
	p     *producer.Producer
	extra []producer.Option
}

// apply sends sig with partial args prepended (unless immutable) and
// options merged over its own (Celery's sig.apply_async(args, **options)).
func (a *applier) apply(ctx context.Context, sig protocol.Signature, partial []any, options map[string]any) (*node, error) {
	if sig.Task == "" && sig.SubtaskType == "" {
		return nil, fmt.Errorf("%w: signature without task name", ErrInvalidSignature)
	}
	switch sig.SubtaskType {
	case TypeChain:
		return a.applyChain(ctx, sig, partial, options)
	case TypeGroup:
		return a.applyGroup(ctx, sig, partial, options)
	case TypeChord:
		return a.applyChord(ctx, sig, partial, options)
	}
	args, opts := merge(sig, partial, options)
	return a.send(ctx, sig.Task, args, sig.Kwargs, opts)
}

func (a *applier) send(ctx context.Context, task string, args []any, kwargs map[string]any, opts map[string]any) (*node, error) {
	popts, err := producerOptions(opts)
	if err != nil {
		return nil, err
	}
	msg, err := a.p.Build(task, args, kwargs, append(popts, a.extra...)...)
	if err != nil {
		return nil, err
	}
	if err := a.p.PublishMessage(ctx, msg); err != nil {
		return nil, err
	}
	return &node{id: msg.ID}, nil
}

// merge is Celery's Signature._merge: options override the signature's
// except an existing group_id, stamped_headers and the stamps it names;
// nil options are dropped; partial args are prepended unless the signature
// is immutable.
func merge(sig protocol.Signature, partial []any, options map[string]any) ([]any, map[string]any) {
	opts := make(map[string]any, len(sig.Options)+len(options))
	maps.Copy(opts, sig.Options)
	stamped := protocol.StampNames(sig.Options[protocol.OptionStampedHeaders])
	for k, v := range options {
		if v == nil {
			continue
		}
		if k == "group_id" || k == protocol.OptionStampedHeaders || slices.Contains(stamped, k) {
			if _, ok := sig.Options[k]; ok {
				continue
			}
		}
		opts[k] = v
	}
	args := sig.Args
	if len(partial) > 0 && !sig.Immutable {
		args = append(append([]any{}, partial...), sig.Args...)
	}
	if args == nil {
		args = []any{}
	}
	return args, opts
}

func optString(opts map[string]any, key string) string {
	s, _ := opts[key].(string)
	return s
}

// tasksOf reads kwargs["tasks"] of a chain or group signature.
func tasksOf(sig protocol.Signature) ([]protocol.Signature, error) {
	v, ok := sig.Kwargs["tasks"]
	if !ok {
		return nil, fmt.Errorf("%w: %s signature without kwargs.tasks", ErrInvalidSignature, sig.SubtaskType)
	}
	if _, isList := v.([]any); !isList {
		if _, isSigs := v.([]protocol.Signature); !isSigs {
			return nil, fmt.Errorf("%w: kwargs.tasks of a %s is %T, not a list", ErrInvalidSignature, sig.SubtaskType, v)
		}
	}
	return sigList(v)
}

func sigValues(sigs []protocol.Signature) []any {
	out := make([]any, len(sigs))
	for i, s := range sigs {
		out[i] = sigValue(s)
	}
	return out
}

// freezeArgs are the arguments of Celery's freeze.
type freezeArgs struct {
	id         string
	groupID    string
	chord      *protocol.Signature
	rootID     string
	parentID   string
	groupIndex *int
}

// freeze gives sig (modified in place) its final ids and returns its
// result node, as Celery's freeze does for each kind of signature.
func (a *applier) freeze(sig *protocol.Signature, f freezeArgs) (*node, error) {
	if sig.Options == nil {
		sig.Options = map[string]any{}
	}
	opts := sig.Options
	switch sig.SubtaskType {
	case TypeGroup:
		gid := optString(opts, "task_id")
		if gid == "" {
			gid = f.groupID
			if gid == "" {
				gid = a.p.NewID()
			}
			opts["task_id"] = gid
		}
		if f.groupID != "" {
			opts["group_id"] = f.groupID
		}
		if f.chord != nil {
			opts["chord"] = sigValue(*f.chord)
		}
		if f.groupIndex != nil {
			opts["group_index"] = int64(*f.groupIndex)
		}
		if _, ok := opts["root_id"]; !ok {
			opts["root_id"] = nilIfEmpty(f.rootID)
		}
		if _, ok := opts["parent_id"]; !ok {
			opts["parent_id"] = nilIfEmpty(f.parentID)
		}
		root, _ := opts["root_id"].(string)
		parent, _ := opts["parent_id"].(string)
		members, err := a.unroll(*sig)
		if err != nil {
			return nil, err
		}
		n := &node{id: gid, group: true}
		for i := range members {
			idx := i
			c, err := a.freeze(&members[i], freezeArgs{groupID: f.groupID, chord: f.chord, rootID: root, parentID: parent, groupIndex: &idx})
			if err != nil {
				return nil, err
			}
			n.children = append(n.children, c)
		}
		sig.Kwargs = map[string]any{"tasks": sigValues(members)}
		return n, nil
	case TypeChain:
		tasks, err := tasksOf(*sig)
		if err != nil {
			return nil, err
		}
		prepared, nodes, err := a.prepareSteps(tasks, sig.Args, f, nil)
		if err != nil {
			return nil, err
		}
		ordered := make([]protocol.Signature, len(prepared))
		for i, t := range prepared {
			ordered[len(prepared)-1-i] = t
		}
		sig.Kwargs = map[string]any{"tasks": sigValues(ordered)}
		return nodes[0], nil
	case TypeChord:
		header, body, err := chordParts(*sig)
		if err != nil {
			return nil, err
		}
		bodyNode, err := a.freeze(&body, freezeArgs{id: f.id, rootID: f.rootID, chord: f.chord, groupID: f.groupID, groupIndex: f.groupIndex})
		if err != nil {
			return nil, err
		}
		headerNode, err := a.freeze(&header, freezeArgs{parentID: f.parentID, rootID: f.rootID, chord: &body})
		if err != nil {
			return nil, err
		}
		bodyNode.root().parent = headerNode
		opts["task_id"] = headerNode.id
		kw := map[string]any{"kwargs": map[string]any{}}
		if inner, ok := sig.Kwargs["kwargs"]; ok && inner != nil {
			kw["kwargs"] = inner
		}
		kw["header"] = sigValue(header)
		kw["body"] = sigValue(body)
		sig.Kwargs = kw
		return bodyNode, nil
	}
	tid := optString(opts, "task_id")
	if tid == "" {
		tid = f.id
		if tid == "" {
			tid = a.p.NewID()
		}
		opts["task_id"] = tid
	}
	if f.rootID != "" {
		opts["root_id"] = f.rootID
	}
	if f.parentID != "" {
		opts["parent_id"] = f.parentID
	}
	if _, ok := opts["reply_to"]; !ok {
		opts["reply_to"] = a.p.ReplyTo()
	}
	if f.groupID != "" {
		if _, ok := opts["group_id"]; !ok {
			opts["group_id"] = f.groupID
		}
	}
	if f.chord != nil {
		opts["chord"] = sigValue(*f.chord)
	}
	if f.groupIndex != nil {
		opts["group_index"] = int64(*f.groupIndex)
	}
	return &node{id: tid}, nil
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// unroll returns the members of a group, nested groups flattened, each a
// copy.
func (a *applier) unroll(g protocol.Signature) ([]protocol.Signature, error) {
	tasks, err := tasksOf(g)
	if err != nil {
		return nil, err
	}
	var out []protocol.Signature
	for _, t := range tasks {
		if t.SubtaskType == TypeGroup {
			inner, err := a.unroll(t)
			if err != nil {
				return nil, err
			}
			out = append(out, inner...)
			continue
		}
		out = append(out, cloneSig(t))
	}
	return out, nil
}

// prepareSteps is Celery's chain.prepare_steps: it freezes the chain's
// tasks from last to first and returns them in that (wire) order with
// their result nodes. The first task gets the partial args; f applies to
// the last task; a group followed by a task becomes a chord.
func (a *applier) prepareSteps(tasks []protocol.Signature, args []any, f freezeArgs, linkError []protocol.Signature) ([]protocol.Signature, []*node, error) {
	steps := append([]protocol.Signature(nil), tasks...)
	var (
		prepared []protocol.Signature
		nodes    []*node
		prev     *protocol.Signature
		prevNode *node
	)
	i := 0
	for len(steps) > 0 {
		t := cloneSig(steps[len(steps)-1])
		steps = steps[:len(steps)-1]
		isFirst, isLast := len(steps) == 0, i == 0
		if isFirst && len(args) > 0 && !t.Immutable {
			t.Args = append(append([]any{}, args...), t.Args...)
		}
		if t.SubtaskType == TypeChain {
			inner, err := tasksOf(t)
			if err != nil {
				return nil, nil, err
			}
			steps = append(steps, inner...)
			continue
		}
		if t.SubtaskType == TypeGroup && prev != nil {
			// group(...) | sig becomes chord(group, sig).
			prepared = prepared[:len(prepared)-1]
			nodes = nodes[:len(nodes)-1]
			t = protocol.Signature{
				Task:        "celery.chord",
				Args:        []any{},
				Kwargs:      map[string]any{"kwargs": map[string]any{}, "header": sigValue(t), "body": sigValue(*prev)},
				Options:     map[string]any{},
				SubtaskType: TypeChord,
			}
		}
		var (
			n   *node
			err error
		)
		if isLast {
			n, err = a.freeze(&t, f)
		} else {
			n, err = a.freeze(&t, freezeArgs{rootID: f.rootID})
		}
		if err != nil {
			return nil, nil, err
		}
		i++
		if prevNode != nil && prevNode.parent == nil {
			prevNode.parent = n
		}
		if len(linkError) > 0 {
			t.Options["link_error"] = appendSigs(t.Options["link_error"], linkError)
		}
		prepared = append(prepared, t)
		nodes = append(nodes, n)
		tc := t
		prev, prevNode = &tc, n
		if t.SubtaskType == TypeChord {
			prevNode = n.root()
		}
	}
	if len(prepared) == 0 {
		return nil, nil, fmt.Errorf("%w: empty chain", ErrEmptyCanvas)
	}
	return prepared, nodes, nil
}

func appendSigs(v any, sigs []protocol.Signature) []any {
	var out []any
	switch x := v.(type) {
	case nil:
	case []any:
		out = append(out, x...)
	default:
		out = append(out, x)
	}
	return append(out, sigValues(sigs)...)
}

// applyChain is Celery's chain.apply_async/run: only the first task is
// sent, with the rest (frozen, reversed) as its chain option.
func (a *applier) applyChain(ctx context.Context, sig protocol.Signature, partial []any, options map[string]any) (*node, error) {
	_, opts := merge(protocol.Signature{Options: sig.Options}, nil, options)
	args := sig.Args
	if len(partial) > 0 && !sig.Immutable {
		args = append(append([]any{}, partial...), sig.Args...)
	}
	tasks, err := tasksOf(sig)
	if err != nil {
		return nil, err
	}
	f := freezeArgs{
		id:       optString(opts, "task_id"),
		groupID:  optString(opts, "group_id"),
		rootID:   optString(opts, "root_id"),
		parentID: optString(opts, "parent_id"),
	}
	if c, ok := opts["chord"]; ok && c != nil {
		body, err := toSignature(c)
		if err != nil {
			return nil, err
		}
		f.chord = &body
	}
	if gi, ok := opts["group_index"]; ok && gi != nil {
		idx, err := integer(gi)
		if err != nil {
			return nil, fmt.Errorf("%w: group_index: %w", ErrInvalidSignature, err)
		}
		f.groupIndex = &idx
	}
	linkErr, err := sigList(opts["link_error"])
	if err != nil {
		return nil, err
	}
	link, err := sigList(opts["link"])
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"task_id", "group_id", "chord", "group_index", "link", "link_error", "root_id", "parent_id"} {
		delete(opts, k)
	}
	prepared, nodes, err := a.prepareSteps(tasks, args, freezeArgs{id: f.id, groupID: f.groupID, chord: f.chord, rootID: f.rootID, groupIndex: f.groupIndex}, linkErr)
	if err != nil {
		return nil, err
	}
	if len(link) > 0 {
		prepared[0].Options["link"] = appendSigs(prepared[0].Options["link"], link)
	}
	first := prepared[len(prepared)-1]
	rest := prepared[:len(prepared)-1]
	chain := []any{}
	if existing, ok := opts["chain"]; ok && existing != nil {
		prev, err := sigList(existing)
		if err != nil {
			return nil, err
		}
		chain = append(chain, sigValues(prev)...)
	}
	chain = append(chain, sigValues(rest)...)
	opts["chain"] = chain
	// Celery fills these from the current worker task; the applier gets
	// them explicitly.
	if f.rootID != "" {
		opts["root_id"] = f.rootID
	}
	if f.parentID != "" {
		opts["parent_id"] = f.parentID
	}
	n, err := a.apply(ctx, first, nil, opts)
	if err != nil {
		return nil, err
	}
	if len(rest) == 0 {
		return n, nil
	}
	return nodes[0], nil
}

// applyGroup is Celery's group.apply_async: every member is frozen with
// the group id and sent; a member that carries a chord body triggers the
// chord size write before the last member is sent.
func (a *applier) applyGroup(ctx context.Context, sig protocol.Signature, partial []any, options map[string]any) (*node, error) {
	_, opts := merge(protocol.Signature{Options: sig.Options}, nil, options)
	gid := optString(opts, "task_id")
	if gid == "" {
		gid = a.p.NewID()
	}
	delete(opts, "task_id")
	opts["group_id"] = gid
	rootID := optString(opts, "root_id")
	members, err := a.unroll(sig)
	if err != nil {
		return nil, err
	}
	n := &node{id: gid, group: true}
	for i := range members {
		c, err := a.freeze(&members[i], freezeArgs{groupID: gid, rootID: rootID})
		if err != nil {
			return nil, err
		}
		n.children = append(n.children, c)
	}
	var chordBody any
	if c, ok := opts["chord"]; ok {
		chordBody = c
		delete(opts, "chord")
	}
	size := 0
	for i, m := range members {
		body := chordBody
		if body == nil {
			body = m.Options["chord"]
		}
		size += descend(m)
		mopts := maps.Clone(opts)
		if body != nil {
			mopts["chord"] = body
			if i == len(members)-1 {
				switch cb := a.p.Backend().(type) {
				case result.ChordBackend:
					if err := cb.SetChordSize(ctx, gid, size); err != nil {
						return nil, fmt.Errorf("canvas: set chord size of %s: %w", gid, err)
					}
				case result.ChordPoller:
					// Nothing to count: applyChord sent celery.chord_unlock.
				default:
					return nil, ErrChordNotSupported
				}
			}
		}
		if _, err := a.apply(ctx, m, partial, mopts); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// descend counts the chord header parts a signature contributes
// (Celery's chord._descend).
func descend(s protocol.Signature) int {
	switch s.SubtaskType {
	case TypeGroup:
		tasks, err := tasksOf(s)
		if err != nil {
			return 0
		}
		n := 0
		for _, t := range tasks {
			n += descend(t)
		}
		return n
	case TypeChain:
		tasks, err := tasksOf(s)
		if err != nil {
			return 0
		}
		for i := len(tasks) - 1; i >= 0; i-- {
			if n := descend(tasks[i]); n > 0 {
				return n
			}
		}
		return 0
	case TypeChord:
		_, body, err := chordParts(s)
		if err != nil {
			return 0
		}
		return descend(body)
	}
	return 1
}

// chordParts reads the header (as a group signature) and body of a chord
// signature.
func chordParts(s protocol.Signature) (header, body protocol.Signature, err error) {
	hv, ok := s.Kwargs["header"]
	if !ok || hv == nil {
		return header, body, fmt.Errorf("%w: chord without header", ErrInvalidSignature)
	}
	switch hv.(type) {
	case []any, []protocol.Signature:
		tasks, err := sigList(hv)
		if err != nil {
			return header, body, err
		}
		header = groupSig(tasks)
	default:
		header, err = toSignature(hv)
		if err != nil {
			return header, body, err
		}
		if header.SubtaskType != TypeGroup {
			header = groupSig([]protocol.Signature{header})
		}
	}
	bv, ok := s.Kwargs["body"]
	if !ok || bv == nil {
		return header, body, fmt.Errorf("%w: chord without body", ErrInvalidSignature)
	}
	body, err = toSignature(bv)
	return header, body, err
}

func groupSig(tasks []protocol.Signature) protocol.Signature {
	return protocol.Signature{
		Task:        "celery.group",
		Args:        []any{},
		Kwargs:      map[string]any{"tasks": sigValues(tasks)},
		Options:     map[string]any{},
		SubtaskType: TypeGroup,
	}
}

// applyChord is Celery's chord.apply_async/run: on a backend that counts
// chord parts (result.ChordBackend) the header's last message sets the
// chord size; on a result.ChordPoller, celery.chord_unlock is sent first,
// as Celery's fallback_chord_unlock does.
func (a *applier) applyChord(ctx context.Context, sig protocol.Signature, partial []any, options map[string]any) (*node, error) {
	args := sig.Args
	if len(partial) > 0 && !sig.Immutable {
		args = append(append([]any{}, partial...), sig.Args...)
	}
	header, body, err := chordParts(sig)
	if err != nil {
		return nil, err
	}
	// body.clone(**options)
	_, bodyOpts := merge(body, nil, options)
	body.Options = bodyOpts
	_, merged := merge(protocol.Signature{Options: sig.Options}, nil, options)
	taskID := optString(merged, "task_id")
	delete(merged, "task_id")

	members, err := a.unroll(header)
	if err != nil {
		return nil, err
	}
	unlock := false
	if len(members) > 0 {
		switch a.p.Backend().(type) {
		case result.ChordBackend:
		case result.ChordPoller:
			unlock = true
		default:
			return nil, ErrChordNotSupported
		}
	}
	gid := optString(header.Options, "task_id")
	if gid == "" {
		gid = a.p.NewID()
	}
	rootID := optString(body.Options, "root_id")
	maps.Copy(body.Options, merged)
	bodyNode, err := a.freeze(&body, freezeArgs{id: taskID, rootID: rootID})
	if err != nil {
		return nil, err
	}
	delete(merged, "chain")
	delete(merged, "chord")

	// header._freeze_group_tasks(group_id=gid, chord=body, root_id=root_id)
	header.Options = maps.Clone(header.Options)
	if header.Options == nil {
		header.Options = map[string]any{}
	}
	header.Options["task_id"] = gid
	header.Options["group_id"] = gid
	header.Options["chord"] = sigValue(body)
	headerNode := &node{id: gid, group: true}
	for i := range members {
		idx := i
		c, err := a.freeze(&members[i], freezeArgs{groupID: gid, chord: &body, rootID: rootID, groupIndex: &idx})
		if err != nil {
			return nil, err
		}
		headerNode.children = append(headerNode.children, c)
	}
	header.Kwargs = map[string]any{"tasks": sigValues(members)}

	if unlock {
		if err := a.sendChordUnlock(ctx, gid, body, headerNode); err != nil {
			return nil, err
		}
	}
	if len(members) > 0 {
		gopts := maps.Clone(merged)
		gopts["task_id"] = gid
		if _, err := a.applyGroup(ctx, header, args, gopts); err != nil {
			return nil, err
		}
	} else {
		if _, err := a.apply(ctx, body, []any{[]any{}}, nil); err != nil {
			return nil, err
		}
	}
	bodyNode.root().parent = headerNode
	return bodyNode, nil
}

// chordUnlockTask is Celery's builtin that completes a chord by polling
// its header's results.
const chordUnlockTask = "celery.chord_unlock"

// sendChordUnlock is Celery's fallback_chord_unlock: celery.chord_unlock
// (group id, body) with the header's result tuples, one second from now,
// to the body's queue (or the default one) at the body's priority.
func (a *applier) sendChordUnlock(ctx context.Context, gid string, body protocol.Signature, header *node) error {
	tuples := make([]any, len(header.children))
	for i, c := range header.children {
		tuples[i] = c.tuple()
	}
	opts := map[string]any{"countdown": int64(1)}
	if q := optString(body.Options, "queue"); q != "" {
		opts["queue"] = q
	}
	if p, ok := body.Options["priority"]; ok && p != nil {
		opts["priority"] = p
	}
	kwargs := map[string]any{"interval": nil, "max_retries": nil, "result": tuples}
	if _, err := a.send(ctx, chordUnlockTask, []any{gid, sigValue(body)}, kwargs, opts); err != nil {
		return fmt.Errorf("canvas: send %s for chord %s: %w", chordUnlockTask, gid, err)
	}
	return nil
}

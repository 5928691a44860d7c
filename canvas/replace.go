package canvas

import (
	"context"
	"fmt"
	"reflect"

	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
)

// AccumulateTask is Celery's builtin that returns one of its arguments
// (kwargs index) or all of them; a group that replaces a task becomes a
// chord whose body is celery.accumulate(index=0).
const AccumulateTask = "celery.accumulate"

// ReplacedTask is what a replaced task's message told about it: the
// fields of Celery's task.request that Task.replace reads.
type ReplacedTask struct {
	ID, RootID, GroupID string
	GroupIndex          *int
	// Chord is the chord body the task was a header part of.
	Chord *protocol.Signature
	// Callbacks, Errbacks and Chain are the task's link, link_error and
	// the rest of its chain (wire order: next task last).
	Callbacks, Errbacks, Chain []protocol.Signature
	// Nesting is the task's replaced_task_nesting header (0 when absent).
	Nesting int
}

// ReplacedFrom returns the ReplacedTask of a task message.
func ReplacedFrom(msg *protocol.Message) ReplacedTask {
	r := ReplacedTask{
		ID: msg.ID, RootID: msg.RootID, GroupID: msg.GroupID, GroupIndex: msg.GroupIndex,
		Chord: msg.Chord, Callbacks: msg.Callbacks, Errbacks: msg.Errbacks, Chain: msg.Chain,
	}
	if n, err := integer(msg.Headers["replaced_task_nesting"]); err == nil {
		r.Nesting = n
	}
	return r
}

// ReplaceError is why a signature cannot replace a task; Python sees it
// as celery.exceptions.ImproperlyConfigured.
type ReplaceError struct{ Reason string }

func (e *ReplaceError) Error() string { return e.Reason }

// PythonException is the exception Celery's Task.replace raises.
func (e *ReplaceError) PythonException() *protocol.Exception {
	exc := protocol.NewException("ImproperlyConfigured", e.Reason)
	exc.Module = "celery.exceptions"
	return exc
}

// Replace sends sig in place of the task t, as Celery's Task.replace does
// (then the task stores no result of its own):
//
//   - a group becomes a chord whose body is celery.accumulate(index=0), so
//     that the replaced task's result is the list of the group's results;
//   - the task's callbacks and errbacks are linked to sig (to a chain's
//     last task, to a chord's body);
//   - sig's final task takes the task's id, so that its result is stored
//     under the id the client waits on;
//   - sig takes the task's chord, group id, group index and root id, and
//     replaced_task_nesting one more than the task's;
//   - the rest of the task's chain follows sig, each task keeping its id;
//   - what is sent has the task as parent.
//
// A signature that cannot replace a task (part of a chord, an empty chain,
// no task name) returns a *ReplaceError or an ErrInvalidSignature error,
// and nothing is sent. It returns the result tuple of what was sent.
func Replace(ctx context.Context, p *producer.Producer, t ReplacedTask, sig protocol.Signature) ([]any, error) {
	s, err := deepSig(sig)
	if err != nil {
		return nil, err
	}
	if _, ok := s.Options["chord"]; ok {
		return nil, &ReplaceError{"A signature replacing a task must not be part of a chord"}
	}
	switch s.SubtaskType {
	case TypeChain:
		tasks, err := tasksOf(s)
		if err != nil {
			return nil, err
		}
		if len(tasks) == 0 {
			return nil, &ReplaceError{"Cannot replace with an empty chain"}
		}
	case TypeGroup:
		if _, err := tasksOf(s); err != nil {
			return nil, err
		}
		acc := protocol.Signature{Task: AccumulateTask, Args: []any{}, Kwargs: map[string]any{"index": int64(0)}, Options: map[string]any{}}
		s = protocol.Signature{
			Task:        "celery.chord",
			Args:        []any{},
			Kwargs:      map[string]any{"kwargs": map[string]any{}, "header": sigValue(s), "body": sigValue(acc)},
			Options:     map[string]any{},
			SubtaskType: TypeChord,
		}
	case "":
		if s.Task == "" {
			return nil, fmt.Errorf("%w: signature without task name", ErrInvalidSignature)
		}
	}
	for _, cb := range t.Callbacks {
		if err := link(&s, "link", cb); err != nil {
			return nil, err
		}
	}
	for _, eb := range t.Errbacks {
		if err := link(&s, "link_error", eb); err != nil {
			return nil, err
		}
	}
	nesting := int64(t.Nesting + 1)
	if s.SubtaskType == TypeChain {
		// Links of a chain go to its last task, errbacks to every task.
		tasks, _ := tasksOf(s)
		links, _ := sigList(s.Options["link"])
		errbacks, _ := sigList(s.Options["link_error"])
		for i := range tasks {
			tasks[i] = cloneSig(tasks[i])
			for _, eb := range errbacks {
				if err := link(&tasks[i], "link_error", eb); err != nil {
					return nil, err
				}
			}
			setNesting(&tasks[i], nesting)
		}
		for _, l := range links {
			if err := link(&tasks[len(tasks)-1], "link", l); err != nil {
				return nil, err
			}
		}
		delete(s.Options, "link")
		delete(s.Options, "link_error")
		if err := setID(&tasks[len(tasks)-1], t.ID); err != nil {
			return nil, err
		}
		s.Kwargs = map[string]any{"tasks": sigValues(tasks)}
	} else if err := setID(&s, t.ID); err != nil {
		return nil, err
	}
	if t.Chord != nil {
		s.Options["chord"] = sigValue(*t.Chord)
	}
	if t.GroupID != "" {
		s.Options["group_id"] = t.GroupID
	}
	if t.GroupIndex != nil {
		s.Options["group_index"] = int64(*t.GroupIndex)
	}
	setNesting(&s, nesting)

	if len(t.Chain) > 0 {
		var steps []protocol.Signature
		if s.SubtaskType == TypeChain {
			steps, _ = tasksOf(s)
		} else {
			steps = []protocol.Signature{s}
		}
		for i := len(t.Chain) - 1; i >= 0; i-- {
			next := cloneSig(t.Chain[i])
			setNesting(&next, nesting)
			steps = append(steps, next)
		}
		s = protocol.Signature{Task: "celery.chain", Args: []any{}, Kwargs: map[string]any{"tasks": sigValues(steps)},
			Options: map[string]any{}, SubtaskType: TypeChain}
	}
	root := t.RootID
	if root == "" {
		root = t.ID
	}
	a := applier{p: p}
	n, err := a.apply(ctx, s, nil, map[string]any{"parent_id": t.ID, "root_id": root})
	if err != nil {
		return nil, err
	}
	return []any{n.tuple()}, nil
}

// setNesting sets the replaced_task_nesting header of the messages sig
// sends.
func setNesting(sig *protocol.Signature, n int64) {
	h := map[string]any{}
	if old, ok := sig.Options["headers"].(map[string]any); ok {
		for k, v := range old {
			h[k] = v
		}
	}
	h["replaced_task_nesting"] = n
	sig.Options["headers"] = h
}

// setID gives the task whose result is sig's result the id (Celery's
// sig.freeze(id)): a task itself, a chain's last task, a chord's body, a
// group's id.
func setID(sig *protocol.Signature, id string) error {
	switch sig.SubtaskType {
	case TypeChain:
		tasks, err := tasksOf(*sig)
		if err != nil {
			return err
		}
		if len(tasks) == 0 {
			return &ReplaceError{"Cannot replace with an empty chain"}
		}
		last := cloneSig(tasks[len(tasks)-1])
		if err := setID(&last, id); err != nil {
			return err
		}
		tasks[len(tasks)-1] = last
		sig.Kwargs = copyMap(sig.Kwargs)
		sig.Kwargs["tasks"] = sigValues(tasks)
		return nil
	case TypeChord:
		_, body, err := chordParts(*sig)
		if err != nil {
			return err
		}
		body = cloneSig(body)
		if err := setID(&body, id); err != nil {
			return err
		}
		sig.Kwargs = copyMap(sig.Kwargs)
		sig.Kwargs["body"] = sigValue(body)
		return nil
	}
	sig.Options["task_id"] = id
	return nil
}

// link adds cb to the option key ("link" or "link_error") of sig as
// Celery's link and link_error do: a chord links its body, a group every
// member (errbacks) or its first member (callbacks, made immutable); an
// equal signature is not added twice.
func link(sig *protocol.Signature, key string, cb protocol.Signature) error {
	switch sig.SubtaskType {
	case TypeChord:
		_, body, err := chordParts(*sig)
		if err != nil {
			return err
		}
		body = cloneSig(body)
		if err := link(&body, key, cb); err != nil {
			return err
		}
		sig.Kwargs = copyMap(sig.Kwargs)
		sig.Kwargs["body"] = sigValue(body)
		return nil
	case TypeGroup:
		tasks, err := tasksOf(*sig)
		if err != nil {
			return err
		}
		imm := cloneSig(cb)
		imm.Immutable = true
		for i := range tasks {
			tasks[i] = cloneSig(tasks[i])
			if err := link(&tasks[i], key, imm); err != nil {
				return err
			}
			if key == "link" {
				break
			}
		}
		sig.Kwargs = copyMap(sig.Kwargs)
		sig.Kwargs["tasks"] = sigValues(tasks)
		return nil
	}
	existing, err := sigList(sig.Options[key])
	if err != nil {
		return err
	}
	want := normalized(sigValue(cb))
	for _, e := range existing {
		if reflect.DeepEqual(normalized(sigValue(e)), want) {
			return nil
		}
	}
	sig.Options[key] = append(sigValues(existing), sigValue(cb))
	return nil
}

// deepSig copies sig through its JSON form, so that nothing of the
// caller's signature is changed.
func deepSig(sig protocol.Signature) (protocol.Signature, error) {
	data, err := protocol.MarshalJSON(sigValue(sig))
	if err != nil {
		return protocol.Signature{}, fmt.Errorf("%w: %w", ErrInvalidSignature, err)
	}
	v, err := protocol.UnmarshalJSON(data)
	if err != nil {
		return protocol.Signature{}, fmt.Errorf("%w: %w", ErrInvalidSignature, err)
	}
	s, err := protocol.SignatureFromValue(v)
	if err != nil {
		return protocol.Signature{}, fmt.Errorf("%w: %w", ErrInvalidSignature, err)
	}
	if s.Options == nil {
		s.Options = map[string]any{}
	}
	return s, nil
}

func normalized(v any) any {
	data, err := protocol.MarshalJSON(v)
	if err != nil {
		return v
	}
	out, err := protocol.UnmarshalJSON(data)
	if err != nil {
		return v
	}
	return out
}

func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

package canvas_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/gworker/gworker/canvas"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
)

func replaceOne(t *testing.T, rt canvas.ReplacedTask, s protocol.Signature) ([]event, []any) {
	t.Helper()
	rec := &recorder{}
	p := newProducer(rec, producer.Options{NewID: counterIDs("0000beef")})
	children, err := canvas.Replace(context.Background(), p, rt, s)
	if err != nil {
		t.Fatal(err)
	}
	return rec.published(), children
}

func bodyOf(t *testing.T, e event) (args []any, kwargs, embed map[string]any) {
	t.Helper()
	b := protocolBody(t, e)
	return b[0].([]any), b[1].(map[string]any), b[2].(map[string]any)
}

func protocolBody(t *testing.T, e event) []any {
	t.Helper()
	v, err := protocol.UnmarshalJSON(e.msg.Body)
	if err != nil {
		t.Fatal(err)
	}
	return v.([]any)
}

func taskNames(list any) []any {
	var out []any
	for _, s := range list.([]any) {
		out = append(out, s.(map[string]any)["task"])
	}
	return out
}

// A task replaced by a plain signature: the replacement takes the task's
// id, callbacks, errbacks, group and chord, has the task as parent and
// replaced_task_nesting one more than the task's.
func TestReplaceByTaskInheritsTheRequest(t *testing.T) {
	gi := 2
	body := sig("tasks.tsum")
	rt := canvas.ReplacedTask{
		ID: "T", RootID: "R", GroupID: "G", GroupIndex: &gi, Chord: &body,
		Callbacks: []protocol.Signature{sig("tasks.cb")}, Errbacks: []protocol.Signature{sig("tasks.eb")},
		Nesting: 1,
	}
	msgs, children := replaceOne(t, rt, sig("tasks.add", 1, 2))
	if len(msgs) != 1 {
		t.Fatalf("published %d messages, want 1", len(msgs))
	}
	h := msgs[0].msg.Headers
	if h["id"] != "T" || h["task"] != "tasks.add" || h["parent_id"] != "T" || h["root_id"] != "R" ||
		h["group"] != "G" || h["group_index"] != int64(2) || h["replaced_task_nesting"] != int64(2) {
		t.Errorf("headers %v", h)
	}
	args, _, embed := bodyOf(t, msgs[0])
	if !reflect.DeepEqual(args, []any{int64(1), int64(2)}) {
		t.Errorf("args %v", args)
	}
	if !reflect.DeepEqual(taskNames(embed["callbacks"]), []any{"tasks.cb"}) ||
		!reflect.DeepEqual(taskNames(embed["errbacks"]), []any{"tasks.eb"}) {
		t.Errorf("embed %v", embed)
	}
	if c, _ := embed["chord"].(map[string]any); c == nil || c["task"] != "tasks.tsum" {
		t.Errorf("embed.chord %v", embed["chord"])
	}
	if want := []any{[]any{[]any{"T", nil}, nil}}; !reflect.DeepEqual(children, want) {
		t.Errorf("children %#v, want %#v", children, want)
	}
}

// A chain replacing a task in the middle of a chain: its last task takes
// the task's id and links, the rest of the outer chain follows it with the
// ids it had.
func TestReplaceByChainInsideAChain(t *testing.T) {
	next := sig("tasks.after")
	next.Options["task_id"] = "NEXT"
	rt := canvas.ReplacedTask{ID: "T", RootID: "R", Chain: []protocol.Signature{next},
		Callbacks: []protocol.Signature{sig("tasks.cb")}}
	repl := canvas.Chain(canvas.Sig("tasks.a", 1), canvas.Sig("tasks.b")).Signature().
		Link(canvas.Sig("tasks.inner_link")).LinkError(canvas.Sig("tasks.inner_eb"))
	msgs, _ := replaceOne(t, rt, repl.Signature)
	if len(msgs) != 1 {
		t.Fatalf("published %d messages, want the chain's first task", len(msgs))
	}
	h := msgs[0].msg.Headers
	if h["task"] != "tasks.a" || h["parent_id"] != "T" || h["root_id"] != "R" || h["replaced_task_nesting"] != int64(1) {
		t.Errorf("headers %v", h)
	}
	_, _, embed := bodyOf(t, msgs[0])
	chain := embed["chain"].([]any)
	if got := taskNames(embed["chain"]); !reflect.DeepEqual(got, []any{"tasks.after", "tasks.b"}) {
		t.Fatalf("embed.chain %v, want [after b] (next task last)", got)
	}
	b := chain[1].(map[string]any)["options"].(map[string]any)
	after := chain[0].(map[string]any)["options"].(map[string]any)
	if b["task_id"] != "T" || after["task_id"] != "NEXT" {
		t.Errorf("ids: b %v, after %v", b["task_id"], after["task_id"])
	}
	if got := taskNames(b["link"]); !reflect.DeepEqual(got, []any{"tasks.inner_link", "tasks.cb"}) {
		t.Errorf("last task links %v", got)
	}
	if got := taskNames(embed["errbacks"]); !reflect.DeepEqual(got, []any{"tasks.inner_eb"}) {
		t.Errorf("first task errbacks %v", got)
	}
	if got := taskNames(b["link_error"]); !reflect.DeepEqual(got, []any{"tasks.inner_eb"}) {
		t.Errorf("last task errbacks %v", got)
	}
}

// A group replacing a task becomes a chord whose body,
// celery.accumulate(index=0), takes the task's id.
func TestReplaceByGroupBecomesAChord(t *testing.T) {
	rec := &recorder{}
	backend, _, _ := redisChordBackend(t, rec)
	p := newProducer(rec, producer.Options{Backend: backend})
	g := canvas.Group(canvas.Sig("tasks.add", 1, 1), canvas.Sig("tasks.add", 2, 2)).Signature()
	if _, err := canvas.Replace(context.Background(), p, canvas.ReplacedTask{ID: "T", RootID: "R"}, g.Signature); err != nil {
		t.Fatal(err)
	}
	msgs := rec.published()
	if len(msgs) != 2 {
		t.Fatalf("published %d, want the 2 header parts", len(msgs))
	}
	for _, e := range msgs {
		_, _, embed := bodyOf(t, e)
		c := embed["chord"].(map[string]any)
		opts := c["options"].(map[string]any)
		if c["task"] != canvas.AccumulateTask || opts["task_id"] != "T" ||
			!reflect.DeepEqual(c["kwargs"], map[string]any{"index": int64(0)}) {
			t.Errorf("chord body %v", c)
		}
	}
}

func TestReplaceRefusesWhatCeleryRefuses(t *testing.T) {
	inChord := sig("tasks.add")
	body := sig("tasks.x")
	inChord.Options["chord"] = body.Value()
	for name, s := range map[string]protocol.Signature{
		"empty chain":  canvas.Chain().Signature().Signature,
		"chord member": inChord,
	} {
		rec := &recorder{}
		p := newProducer(rec, producer.Options{})
		_, err := canvas.Replace(context.Background(), p, canvas.ReplacedTask{ID: "T"}, s)
		var re *canvas.ReplaceError
		if !errors.As(err, &re) || re.PythonException().Type != "ImproperlyConfigured" {
			t.Errorf("%s: err %v, want ImproperlyConfigured", name, err)
		}
		if n := len(rec.published()); n != 0 {
			t.Errorf("%s: published %d", name, n)
		}
	}
	rec := &recorder{}
	_, err := canvas.Replace(context.Background(), newProducer(rec, producer.Options{}), canvas.ReplacedTask{ID: "T"}, protocol.Signature{})
	if !errors.Is(err, canvas.ErrInvalidSignature) {
		t.Errorf("no task name: err %v, want ErrInvalidSignature", err)
	}
}

// kombu 5.3+ writes datetimes in a signature's options as typed JSON
// ({"__type__": "datetime", "__value__": isoformat}); eta and expires
// read them, other dicts stay refused.
func TestTypedDatetimeOptions(t *testing.T) {
	rec := &recorder{}
	p := newProducer(rec, producer.Options{})
	s := sig("tasks.add", 1)
	s.Options["eta"] = map[string]any{"__type__": "datetime", "__value__": "2026-12-06T10:00:00.500000+00:00"}
	s.Options["expires"] = map[string]any{"__type__": "datetime", "__value__": "2026-12-06T11:00:00+00:00"}
	if _, err := canvas.ApplyFromMessage(context.Background(), p, s, nil, canvas.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	h := rec.published()[0].msg.Headers
	if h["eta"] != "2026-12-06T10:00:00.500000+00:00" || h["expires"] != "2026-12-06T11:00:00+00:00" {
		t.Errorf("eta %v, expires %v", h["eta"], h["expires"])
	}
	bad := sig("tasks.add", 1)
	bad.Options["eta"] = map[string]any{"__type__": "bytes", "__value__": "x"}
	if _, err := canvas.ApplyFromMessage(context.Background(), p, bad, nil, canvas.ApplyOptions{}); !errors.Is(err, canvas.ErrInvalidSignature) {
		t.Errorf("bytes as eta: %v", err)
	}
}

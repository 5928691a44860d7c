package canvas_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/gworker/gworker/canvas"
	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
)

// workerReplyTo is the reply_to of the capture worker's own messages.
const workerReplyTo = "7f85b6f8-33b8-3677-b5be-6d30fa5fa17c"

// compareWorkerVector compares a message with one a Celery worker
// published; ids the worker drew at random (id, correlation_id, a fresh
// group id) are checked for shape and then copied over.
func compareWorkerVector(t *testing.T, name string, e event, random ...string) {
	t.Helper()
	got, want := wireOf(t, e), wireOfVector(t, testenv.LoadVector(t, name))
	gh, wh := got.Headers.(map[string]any), want.Headers.(map[string]any)
	for _, k := range random {
		g, _ := gh[k].(string)
		if !uuidRe.MatchString(g) {
			t.Errorf("%s: header %s = %v, want a uuid", name, k, gh[k])
		}
		gh[k] = wh[k]
		if k == "id" {
			if got.Props["correlation_id"] != g {
				t.Errorf("%s: correlation_id %v != id %s", name, got.Props["correlation_id"], g)
			}
			got.Props["correlation_id"] = want.Props["correlation_id"]
		}
	}
	equalWire(t, name, got, want)
}

func TestLinkCallbackLikeCeleryWorker(t *testing.T) {
	rec := &recorder{}
	p := newProducer(rec, producer.Options{ReplyTo: workerReplyTo, Origin: "gen10983@vm"})
	parent := "0000020e-0000-4000-8000-000000000001"
	mul := sig("tasks.mul", 10)
	mul.Options["queue"] = "cap.next"
	children, err := canvas.ApplyCallbacks(context.Background(), p, []protocol.Signature{mul}, int64(4),
		canvas.ApplyOptions{ParentID: parent, RootID: parent})
	if err != nil {
		t.Fatal(err)
	}
	msgs := rec.published()
	if len(msgs) != 1 {
		t.Fatalf("published %d", len(msgs))
	}
	compareWorkerVector(t, "link_callback_published_by_worker", msgs[0], "id")
	id := msgs[0].msg.Headers["id"]
	if want := []any{[]any{[]any{id, nil}, nil}}; !reflect.DeepEqual(children, want) {
		t.Errorf("children = %#v, want %#v", children, want)
	}
}

func TestChainNextLikeCeleryWorker(t *testing.T) {
	rec := &recorder{}
	p := newProducer(rec, producer.Options{Origin: "gen10983@vm"})
	first := "0000020d-0000-4000-8000-000000000003"
	next := sig("tasks.mul", 10)
	next.Options = map[string]any{"task_id": "0000020d-0000-4000-8000-000000000002", "reply_to": vecReplyTo, "queue": "cap.next"}
	last := sig("tasks.add", 1)
	last.Options = map[string]any{"task_id": "0000020d-0000-4000-8000-000000000001", "reply_to": vecReplyTo}
	children, err := canvas.ApplyChainNext(context.Background(), p, []protocol.Signature{last, next}, int64(4),
		canvas.ApplyOptions{ParentID: first, RootID: first})
	if err != nil {
		t.Fatal(err)
	}
	msgs := rec.published()
	if len(msgs) != 1 {
		t.Fatalf("published %d", len(msgs))
	}
	compareChainNext(t, msgs[0])
	want := []any{[]any{[]any{"0000020d-0000-4000-8000-000000000002", nil}, nil}}
	if !reflect.DeepEqual(children, want) {
		t.Errorf("children = %#v", children)
	}
}

func compareChainNext(t *testing.T, e event) {
	t.Helper()
	got, want := wireOf(t, e), wireOfVector(t, testenv.LoadVector(t, "chain_next_published_by_worker"))
	equalWire(t, "chain_next_published_by_worker", got, want)
}

func TestChordBodyLikeCeleryWorker(t *testing.T) {
	rec := &recorder{}
	p := newProducer(rec, producer.Options{Origin: "gen10983@vm"})
	part := "00000210-0000-4000-8000-000000000005"
	body := sig("tasks.xsum")
	body.Options = map[string]any{"task_id": "00000210-0000-4000-8000-000000000002", "reply_to": vecReplyTo, "queue": "cap.next"}
	_, err := canvas.ApplyFromMessage(context.Background(), p, body, []any{[]any{int64(2), int64(4), int64(6)}},
		canvas.ApplyOptions{ParentID: part, RootID: part})
	if err != nil {
		t.Fatal(err)
	}
	compareWorkerVector(t, "chord_body_published_by_worker", rec.published()[0])
}

func TestErrbackLikeCeleryWorker(t *testing.T) {
	rec := &recorder{}
	p := newProducer(rec, producer.Options{ReplyTo: workerReplyTo, Origin: "gen10983@vm"})
	failed := "0000020f-0000-4000-8000-000000000001"
	eb := sig("tasks.errback_old")
	eb.Options["queue"] = "cap.next"
	children, err := canvas.ApplyErrbacks(context.Background(), p, []protocol.Signature{eb}, failed,
		canvas.ApplyOptions{RootID: failed})
	if err != nil {
		t.Fatal(err)
	}
	msgs := rec.published()
	if len(msgs) != 1 {
		t.Fatalf("published %d", len(msgs))
	}
	compareWorkerVector(t, "link_error_old_style_published_by_worker", msgs[0], "id", "group")
	h := msgs[0].msg.Headers
	want := []any{[]any{[]any{h["group"], nil}, []any{[]any{[]any{h["id"], nil}, nil}}}}
	if !reflect.DeepEqual(children, want) {
		t.Errorf("children = %#v, want the errback group", children)
	}
}

func TestSeveralCallbacksGoAsAGroup(t *testing.T) {
	rec := &recorder{}
	p := newProducer(rec, producer.Options{})
	inner := canvas.Group(canvas.Sig("tasks.a"), canvas.Sig("tasks.b")).Signature().Signature
	children, err := canvas.ApplyCallbacks(context.Background(), p,
		[]protocol.Signature{sig("tasks.x"), inner, sig("tasks.y")}, "r", canvas.ApplyOptions{ParentID: "P", RootID: "R"})
	if err != nil {
		t.Fatal(err)
	}
	msgs := rec.published()
	if len(msgs) != 4 || len(children) != 2 {
		t.Fatalf("published %d messages, %d children; want 4 and 2", len(msgs), len(children))
	}
	groups := map[any]int{}
	for _, e := range msgs {
		h := e.msg.Headers
		if h["parent_id"] != "P" || h["root_id"] != "R" || h["group"] == nil {
			t.Errorf("headers %v", h)
		}
		args := testenv.PyValue(t, e.msg.Body).([]any)[0].([]any)
		if len(args) == 0 || args[0] != "r" {
			t.Errorf("args %v, want the result first", args)
		}
		groups[h["group"]]++
	}
	if len(groups) != 2 {
		t.Errorf("groups %v: the group callback and the plain ones go apart", groups)
	}
}

// TestChainCallbackFromMessage applies a chain found in a message (a
// chain given as link): its first task goes out with the rest as
// embed.chain, and the children tuple is the chain's last result with
// its parents.
func TestChainCallbackFromMessage(t *testing.T) {
	rec := &recorder{}
	p := newProducer(rec, producer.Options{NewID: counterIDs("0000abcd")})
	chain := canvas.Chain(canvas.Sig("tasks.a"), canvas.Sig("tasks.b"), canvas.Si("tasks.c")).Signature().Signature
	// Round-trip through the wire form, as a worker sees it.
	v := testenv.Normalize(t, chain.Value())
	decoded, err := protocol.SignatureFromValue(v)
	if err != nil {
		t.Fatal(err)
	}
	children, err := canvas.ApplyFromMessage(context.Background(), p, decoded, []any{int64(1)},
		canvas.ApplyOptions{ParentID: "P", RootID: "R", Chain: []protocol.Signature{sig("tasks.after")}})
	if err != nil {
		t.Fatal(err)
	}
	msgs := rec.published()
	if len(msgs) != 1 {
		t.Fatalf("published %d", len(msgs))
	}
	h := msgs[0].msg.Headers
	body := testenv.PyValue(t, msgs[0].msg.Body).([]any)
	if h["task"] != "tasks.a" || h["parent_id"] != "P" || h["root_id"] != "R" {
		t.Errorf("headers %v", h)
	}
	if !reflect.DeepEqual(body[0], []any{int64(1)}) {
		t.Errorf("args %v", body[0])
	}
	var names []any
	for _, s := range body[2].(map[string]any)["chain"].([]any) {
		names = append(names, s.(map[string]any)["task"])
	}
	// Wire order: the outer chain's remainder first, then c, then b
	// (next task last).
	if want := []any{"tasks.after", "tasks.c", "tasks.b"}; !reflect.DeepEqual(names, want) {
		t.Errorf("embed.chain tasks = %v, want %v", names, want)
	}
	c := func(n int) string { return "0000abcd-0000-4000-8000-00000000000" + string(rune('0'+n)) }
	want := []any{[]any{[]any{c(1), []any{[]any{c(2), []any{[]any{c(3), nil}, nil}}, nil}}, nil}}
	if !reflect.DeepEqual(children, want) {
		t.Errorf("children = %#v\nwant %#v", children, want)
	}
}

// TestChordFromMessage applies a celery.chord signature found in a chain,
// as a worker continuing the chain must.
func TestChordFromMessage(t *testing.T) {
	rec := &recorder{}
	backend, client, prefix := redisChordBackend(t, rec)
	p := newProducer(rec, producer.Options{Backend: backend})
	ch := canvas.Chord([]*canvas.Signature{canvas.Sig("tasks.add", 10), canvas.Sig("tasks.add", 20)}, canvas.Sig("tasks.xsum")).Signature().Signature
	decoded, err := protocol.SignatureFromValue(testenv.Normalize(t, ch.Value()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	children, err := canvas.ApplyFromMessage(ctx, p, decoded, []any{int64(2)}, canvas.ApplyOptions{ParentID: "P", RootID: "R"})
	if err != nil {
		t.Fatal(err)
	}
	msgs := rec.published()
	if len(msgs) != 2 {
		t.Fatalf("published %d, want the 2 header parts", len(msgs))
	}
	var gid any
	for i, e := range msgs {
		h := e.msg.Headers
		body := testenv.PyValue(t, e.msg.Body).([]any)
		if h["group_index"] != int64(i) || h["group"] == nil || h["parent_id"] != "P" || h["root_id"] != "R" {
			t.Errorf("part %d headers %v", i, h)
		}
		gid = h["group"]
		if args := body[0].([]any); args[0] != int64(2) {
			t.Errorf("part %d args %v, want the parent result first", i, args)
		}
		if c := body[2].(map[string]any)["chord"].(map[string]any); c["task"] != "tasks.xsum" {
			t.Errorf("part %d embed.chord = %v", i, c)
		}
	}
	if n, _ := client.Get(ctx, prefix+gid.(string)+".s").Result(); n != "2" {
		t.Errorf("chord size = %q", n)
	}
	tuple := children[0].([]any)
	head := tuple[0].([]any)
	parent := head[1].([]any)
	if parent[0].([]any)[0] != gid || len(parent[1].([]any)) != 2 {
		t.Errorf("children = %#v, want the body with the header group as parent", children)
	}
}

package canvas_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/gworker/gworker/canvas"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
)

// stampSig is a signature stamped as Celery 5.5's StampingVisitor leaves
// it: stamped_headers lists the names, each stamp is an option.
func stampSig(task string, stamps map[string]any, names ...string) protocol.Signature {
	s := sig(task)
	list := make([]any, len(names))
	for i, n := range names {
		list[i] = n
		s.Options[n] = stamps[n]
	}
	s.Options["stamped_headers"] = list
	return s
}

// stampsOf returns a published message's stamps headers.
func stampsOf(t *testing.T, e event) (names, stamps any) {
	t.Helper()
	return e.msg.Headers["stamped_headers"], e.msg.Headers["stamps"]
}

// What a worker publishes after a stamped task (the next chain element,
// link callbacks, errbacks, a chord body) carries the stamps of the
// signature it sends, in the stamped_headers and stamps headers, as a
// Celery 5.5 worker publishes them.
func TestFollowupsCarryStamps(t *testing.T) {
	stamps := map[string]any{"mystamp": "m1", "mlist": []any{"a", "b"}}
	wantNames, wantStamps := []any{"mlist", "mystamp"}, map[string]any{"mystamp": "m1", "mlist": []any{"a", "b"}}
	base := canvas.ApplyOptions{ParentID: "p", RootID: "r"}
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		apply func(p *producer.Producer) error
	}{
		{"chain next", func(p *producer.Producer) error {
			rest := stampSig("tasks.last", stamps, "mlist", "mystamp")
			next := stampSig("tasks.next", stamps, "mlist", "mystamp")
			_, err := canvas.ApplyChainNext(ctx, p, []protocol.Signature{rest, next}, int64(3), base)
			return err
		}},
		{"link", func(p *producer.Producer) error {
			_, err := canvas.ApplyCallbacks(ctx, p, []protocol.Signature{stampSig("tasks.cb", stamps, "mlist", "mystamp")}, int64(3), base)
			return err
		}},
		{"links", func(p *producer.Producer) error {
			_, err := canvas.ApplyCallbacks(ctx, p, []protocol.Signature{stampSig("tasks.cb", stamps, "mlist", "mystamp"),
				stampSig("tasks.cb2", stamps, "mlist", "mystamp")}, int64(3), base)
			return err
		}},
		{"link_error", func(p *producer.Producer) error {
			_, err := canvas.ApplyErrbacks(ctx, p, []protocol.Signature{stampSig("tasks.eb", stamps, "mlist", "mystamp")}, "failed-id", base)
			return err
		}},
		{"chord body", func(p *producer.Producer) error {
			_, err := canvas.ApplyFromMessage(ctx, p, stampSig("tasks.tsum", stamps, "mlist", "mystamp"), []any{[]any{int64(1)}}, base)
			return err
		}},
	} {
		rec := &recorder{}
		if err := c.apply(newProducer(rec, producer.Options{})); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		msgs := rec.published()
		if len(msgs) == 0 {
			t.Fatalf("%s: nothing published", c.name)
		}
		for _, m := range msgs {
			names, got := stampsOf(t, m)
			if !reflect.DeepEqual(names, wantNames) || !reflect.DeepEqual(got, wantStamps) {
				t.Errorf("%s: %s published with stamped_headers %v, stamps %v; want %v, %v",
					c.name, m.msg.Headers["task"], names, got, wantNames, wantStamps)
			}
		}
		if c.name == "chain next" {
			// The rest of the chain keeps its stamps in its options.
			raw := msgs[0].msg
			m, err := protocol.Decode(raw, protocol.DecodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Chain) != 1 || m.Chain[0].Options["mystamp"] != "m1" || m.StampedHeaders() == nil {
				t.Errorf("chain %+v", m.Chain)
			}
		}
	}
}

// Options applied over a signature do not change its stamps (Celery's
// _merge keeps stamped_headers and the stamps it names); a member with no
// stamps of its own takes the group's.
func TestStampsAreImmutableOptions(t *testing.T) {
	rec := &recorder{}
	p := newProducer(rec, producer.Options{})
	own := stampSig("tasks.own", map[string]any{"s": "member"}, "s")
	bare := sig("tasks.bare")
	g := stampSig("celery.group", map[string]any{"s": "group"}, "s")
	g.SubtaskType = canvas.TypeGroup
	g.Kwargs = map[string]any{"tasks": []any{own.Value(), bare.Value()}}
	if _, err := canvas.ApplyFromMessage(context.Background(), p, g, nil, canvas.ApplyOptions{ParentID: "p", RootID: "r"}); err != nil {
		t.Fatal(err)
	}
	got := map[string]any{}
	for _, m := range rec.published() {
		got[m.msg.Headers["task"].(string)] = m.msg.Headers["stamps"]
	}
	want := map[string]any{"tasks.own": map[string]any{"s": "member"}, "tasks.bare": map[string]any{"s": "group"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stamps %v, want %v", got, want)
	}
}

// A headers option wins over the stamps headers, as Celery's
// send_task_message updates the headers with it last; a signature without
// stamps publishes neither header, as before.
func TestStampsAndHeadersOption(t *testing.T) {
	rec := &recorder{}
	p := newProducer(rec, producer.Options{})
	s := stampSig("tasks.a", map[string]any{"k": "v"}, "k")
	s.Options["headers"] = map[string]any{"stamps": map[string]any{"k": "override"}, "custom": "c"}
	plain := sig("tasks.b")
	if _, err := canvas.ApplyCallbacks(context.Background(), p, []protocol.Signature{s}, nil, canvas.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := canvas.ApplyCallbacks(context.Background(), p, []protocol.Signature{plain}, nil, canvas.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	msgs := rec.published()
	h := msgs[0].msg.Headers
	if !reflect.DeepEqual(h["stamps"], map[string]any{"k": "override"}) || h["custom"] != "c" || !reflect.DeepEqual(h["stamped_headers"], []any{"k"}) {
		t.Errorf("headers %v", h)
	}
	for _, k := range []string{"stamps", "stamped_headers"} {
		if _, ok := msgs[1].msg.Headers[k]; ok {
			t.Errorf("an unstamped signature published %s", k)
		}
	}
}

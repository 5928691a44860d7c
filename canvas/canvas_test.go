package canvas_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/gworker/gworker/canvas"
	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

func TestGroupMatchesCelery(t *testing.T) {
	rec := &recorder{}
	p := newProducer(rec, producer.Options{NewID: counterIDs("00000011")})
	g := canvas.Group(canvas.Sig("tasks.add", 0, 0), canvas.Sig("tasks.add", 1, 1), canvas.Sig("tasks.add", 2, 2))
	res, err := g.ApplyAsync(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	msgs := rec.published()
	if len(msgs) != 3 {
		t.Fatalf("published %d messages, want 3", len(msgs))
	}
	for i, name := range []string{"v2_group3.0", "v2_group3.1", "v2_group3.2"} {
		v := testenv.LoadVector(t, name)
		equalWire(t, name, wireOf(t, msgs[i]), wireOfVector(t, v))
		if !bytes.Equal(msgs[i].msg.Body, v.Body) {
			t.Errorf("%s body: got %s want %s", name, msgs[i].msg.Body, v.Body)
		}
	}
	want := []any{[]any{"00000011-0000-4000-8000-000000000001", nil}, []any{
		[]any{[]any{"00000011-0000-4000-8000-000000000002", nil}, nil},
		[]any{[]any{"00000011-0000-4000-8000-000000000003", nil}, nil},
		[]any{[]any{"00000011-0000-4000-8000-000000000004", nil}, nil},
	}}
	if got := res.AsTuple(); !reflect.DeepEqual(got, want) {
		t.Errorf("group result tuple = %#v", got)
	}
}

func TestChainMatchesCelery(t *testing.T) {
	cases := []struct {
		vector, prefix string
		chain          *canvas.ChainSig
	}{
		{"v2_chain3", "0000000e", canvas.Chain(canvas.Sig("tasks.add", 2, 2), canvas.Sig("tasks.add", 4), canvas.Sig("tasks.add", 8))},
		{"v2_chain_immutable", "0000000f", canvas.Chain(canvas.Sig("tasks.add", 1, 1), canvas.Si("tasks.add", 5, 5), canvas.Sig("tasks.mul", 2))},
	}
	for _, tc := range cases {
		t.Run(tc.vector, func(t *testing.T) {
			rec := &recorder{}
			p := newProducer(rec, producer.Options{NewID: counterIDs(tc.prefix)})
			res, err := tc.chain.ApplyAsync(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			msgs := rec.published()
			if len(msgs) != 1 {
				t.Fatalf("published %d messages, want only the first task", len(msgs))
			}
			equalWire(t, tc.vector, wireOf(t, msgs[0]), wireOfVector(t, testenv.LoadVector(t, tc.vector)))
			// The result is the last task's; parents lead to the first.
			id := func(n int) string { return tc.prefix + "-0000-4000-8000-00000000000" + string(rune('0'+n)) }
			want := []any{[]any{id(1), []any{[]any{id(2), []any{[]any{id(3), nil}, nil}}, nil}}, nil}
			if got := res.AsTuple(); !reflect.DeepEqual(got, want) {
				t.Errorf("result tuple = %#v\nwant %#v", got, want)
			}
		})
	}
}

func TestChainWithGroupBecomesChord(t *testing.T) {
	rec := &recorder{}
	p := newProducer(rec, producer.Options{})
	c := canvas.Chain(
		canvas.Sig("tasks.add", 1, 1),
		canvas.Group(canvas.Sig("tasks.add", 10), canvas.Sig("tasks.add", 20)).Signature(),
		canvas.Sig("tasks.xsum"),
	)
	if _, err := c.ApplyAsync(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	msgs := rec.published()
	if len(msgs) != 1 {
		t.Fatalf("published %d messages", len(msgs))
	}
	got := wireOf(t, msgs[0])
	want := wireOfVector(t, testenv.LoadVector(t, "v2_chain_with_group"))
	// Ids are drawn in another order than Celery's; compare the shapes
	// with ids renamed consistently.
	if g, w := canonicalIDs(got.Body), canonicalIDs(want.Body); !reflect.DeepEqual(g, w) {
		t.Errorf("body:\n got %#v\nwant %#v", g, w)
	}
}

func TestChordMatchesCelery(t *testing.T) {
	rec := &recorder{}
	backend, client, prefix := redisChordBackend(t, rec)
	p := newProducer(rec, producer.Options{NewID: counterIDs("00000012"), Backend: backend})
	ch := canvas.Chord([]*canvas.Signature{
		canvas.Sig("tasks.add", 1, 1), canvas.Sig("tasks.add", 2, 2), canvas.Sig("tasks.add", 3, 3),
	}, canvas.Sig("tasks.xsum"))
	ctx := context.Background()
	res, err := ch.ApplyAsync(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	gid := "00000012-0000-4000-8000-000000000001"
	if res.ID() != "00000012-0000-4000-8000-000000000002" {
		t.Errorf("chord result id = %s, want the frozen body id", res.ID())
	}
	var kinds []string
	for _, e := range rec.events {
		kinds = append(kinds, e.kind)
	}
	if want := []string{"publish", "publish", "chord-size", "publish"}; !reflect.DeepEqual(kinds, want) {
		t.Errorf("events = %v, want %v (size written before the last header message)", kinds, want)
	}
	if e := rec.events[2]; e.group != gid || e.size != 3 {
		t.Errorf("chord size event = %+v", e)
	}
	size, err := client.Get(ctx, prefix+gid+".s").Result()
	if err != nil || size != "3" {
		t.Errorf("chord size key = %q, %v; want \"3\"", size, err)
	}
	if ttl := client.TTL(ctx, prefix+gid+".s").Val(); ttl <= 0 || ttl > 24*time.Hour {
		t.Errorf("chord size key TTL = %v, want about a day", ttl)
	}
	msgs := rec.published()
	for i, name := range []string{"v2_chord3.0", "v2_chord3.1", "v2_chord3.2"} {
		equalWire(t, name, wireOf(t, msgs[i]), wireOfVector(t, testenv.LoadVector(t, name)))
	}
	parent, ok := res.Parent().(*result.GroupResult)
	if !ok || parent.ID() != gid || len(parent.Results()) != 3 {
		t.Errorf("chord result parent = %#v, want the header group", res.Parent())
	}
}

func TestChordEmptyHeaderSendsBody(t *testing.T) {
	rec := &recorder{}
	p := newProducer(rec, producer.Options{})
	res, err := canvas.Chord(nil, canvas.Sig("tasks.xsum")).ApplyAsync(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	msgs := rec.published()
	if len(msgs) != 1 {
		t.Fatalf("published %d messages, want the body only", len(msgs))
	}
	w := wireOf(t, msgs[0])
	body := w.Body.([]any)
	if !reflect.DeepEqual(body[0], []any{[]any{}}) {
		t.Errorf("body args = %#v, want [[]]", body[0])
	}
	if h := w.Headers.(map[string]any); h["id"] != res.ID() || h["task"] != "tasks.xsum" {
		t.Errorf("headers = %v", h)
	}
}

func TestChordNeedsChordBackend(t *testing.T) {
	rec := &recorder{}
	p := newProducer(rec, producer.Options{})
	_, err := canvas.Chord([]*canvas.Signature{canvas.Sig("tasks.add", 1, 1)}, canvas.Sig("tasks.xsum")).ApplyAsync(context.Background(), p)
	if !errors.Is(err, canvas.ErrChordNotSupported) {
		t.Fatalf("err = %v, want ErrChordNotSupported", err)
	}
	if n := len(rec.published()); n != 0 {
		t.Errorf("published %d messages before failing", n)
	}
}

func TestSignatureBuilders(t *testing.T) {
	base := canvas.Sig("tasks.add", 1)
	s := base.WithKwargs(map[string]any{"y": 2}).Set(map[string]any{"queue": "q1", "countdown": 5}).Immutable()
	if len(base.Kwargs) != 0 || len(base.Options) != 0 || base.Signature.Immutable {
		t.Errorf("builders changed the receiver: %+v", base)
	}
	if s.Kwargs["y"] != 2 || s.Options["queue"] != "q1" || !s.Signature.Immutable {
		t.Errorf("built %+v", s)
	}
	linked := base.Link(canvas.Sig("tasks.mul", 10)).LinkError(canvas.Sig("tasks.err"))
	if l, ok := linked.Options["link"].([]any); !ok || len(l) != 1 {
		t.Errorf("link option = %#v", linked.Options["link"])
	}

	rec := &recorder{}
	p := newProducer(rec, producer.Options{})
	res, err := s.Delay(context.Background(), p, 100)
	if err != nil {
		t.Fatal(err)
	}
	w := wireOf(t, rec.published()[0])
	if !reflect.DeepEqual(w.Body.([]any)[0], []any{int64(1)}) {
		t.Errorf("immutable signature got args %v", w.Body.([]any)[0])
	}
	h := w.Headers.(map[string]any)
	if h["id"] != res.ID() || h["eta"] == nil || w.Route[1] != "q1" {
		t.Errorf("headers %v route %v", h, w.Route)
	}

	rec = &recorder{}
	p = newProducer(rec, producer.Options{})
	if _, err := linked.ApplyAsync(context.Background(), p, producer.Priority(3)); err != nil {
		t.Fatal(err)
	}
	m := rec.published()[0].msg
	body := testenv.PyValue(t, m.Body).([]any)
	embed := body[2].(map[string]any)
	if cbs := embed["callbacks"].([]any); len(cbs) != 1 || cbs[0].(map[string]any)["task"] != "tasks.mul" {
		t.Errorf("callbacks = %#v", embed["callbacks"])
	}
	if ebs := embed["errbacks"].([]any); len(ebs) != 1 {
		t.Errorf("errbacks = %#v", embed["errbacks"])
	}
	if m.Priority != 3 {
		t.Errorf("priority = %d", m.Priority)
	}
}

func TestBadCanvasInput(t *testing.T) {
	ctx := context.Background()
	p := newProducer(&recorder{}, producer.Options{})
	if _, err := canvas.Group().ApplyAsync(ctx, p); !errors.Is(err, canvas.ErrEmptyCanvas) {
		t.Errorf("empty group: %v", err)
	}
	if _, err := canvas.Chain().ApplyAsync(ctx, p); !errors.Is(err, canvas.ErrEmptyCanvas) {
		t.Errorf("empty chain: %v", err)
	}
	if _, err := canvas.Chain(nil).ApplyAsync(ctx, p); !errors.Is(err, canvas.ErrInvalidSignature) {
		t.Errorf("nil member: %v", err)
	}
	if _, err := canvas.Chord(nil, nil).ApplyAsync(ctx, p); !errors.Is(err, canvas.ErrInvalidSignature) {
		t.Errorf("chord without body: %v", err)
	}
	if _, err := canvas.Group(canvas.Sig("a")).Signature().ApplyAsync(ctx, p, producer.Queue("x")); !errors.Is(err, canvas.ErrInvalidSignature) {
		t.Errorf("producer options on a group signature: %v", err)
	}
	bad := []protocol.Signature{
		{Task: ""},
		{Task: "celery.chain", SubtaskType: "chain", Kwargs: map[string]any{"tasks": "nope"}},
		{Task: "celery.chain", SubtaskType: "chain"},
		{Task: "celery.group", SubtaskType: "group", Kwargs: map[string]any{"tasks": []any{42}}},
		{Task: "celery.chord", SubtaskType: "chord", Kwargs: map[string]any{"header": []any{}}},
		{Task: "celery.chord", SubtaskType: "chord", Kwargs: map[string]any{"body": map[string]any{"task": "x"}}},
		{Task: "t", Options: map[string]any{"countdown": "soon"}},
		{Task: "t", Options: map[string]any{"priority": 1.5}},
		{Task: "t", Options: map[string]any{"link": 7}},
		{Task: "t", Options: map[string]any{"eta": "yesterday"}},
		{Task: "t", Options: map[string]any{"headers": []any{}}},
		{Task: "t", Options: map[string]any{"task_id": 5}},
	}
	for i, s := range bad {
		if _, err := canvas.ApplyFromMessage(ctx, p, s, nil, canvas.ApplyOptions{}); err == nil {
			t.Errorf("bad signature %d (%+v) accepted", i, s)
		}
	}
}

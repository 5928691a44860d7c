package canvas_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/gworker/gworker/canvas"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result"
)

// pollerBackend is a backend without a chord counter whose chords are
// completed by celery.chord_unlock (Celery's database backend).
type pollerBackend struct{ result.Backend }

func (pollerBackend) PollsChords() {}

// TestChordOnPollerBackend: on a result.ChordPoller the chord is applied
// as Celery's fallback_chord_unlock does: celery.chord_unlock(group id,
// body) with the header's result tuples, one second later, to the body's
// queue, then the header tasks carrying the chord.
func TestChordOnPollerBackend(t *testing.T) {
	rec := &recorder{}
	p := newProducer(rec, producer.Options{Backend: pollerBackend{}})
	body := canvas.Sig("tasks.xsum").Set(map[string]any{"queue": "sums"})
	res, err := canvas.Chord([]*canvas.Signature{canvas.Sig("tasks.add", 1, 1), canvas.Sig("tasks.add", 2, 2)}, body).ApplyAsync(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	msgs := rec.published()
	if len(msgs) != 3 {
		t.Fatalf("published %d messages, want chord_unlock and two header tasks", len(msgs))
	}
	unlock := wireOf(t, msgs[0])
	h := unlock.Headers.(map[string]any)
	if h["task"] != "celery.chord_unlock" || h["eta"] == nil || unlock.Route[1] != "sums" {
		t.Fatalf("first message: headers %v, route %v", h, unlock.Route)
	}
	b := unlock.Body.([]any)
	args, kwargs := b[0].([]any), b[1].(map[string]any)
	group := res.Parent().(*result.GroupResult)
	if args[0] != group.ID() {
		t.Errorf("chord_unlock group id %v, want %s", args[0], group.ID())
	}
	if sig := args[1].(map[string]any); sig["task"] != "tasks.xsum" || sig["options"].(map[string]any)["task_id"] != res.ID() {
		t.Errorf("chord_unlock body %v", sig)
	}
	var want []any
	for _, m := range group.Results() {
		want = append(want, m.AsTuple())
	}
	if !reflect.DeepEqual(kwargs["result"], want) || kwargs["interval"] != nil || kwargs["max_retries"] != nil {
		t.Errorf("chord_unlock kwargs %v, want result %v", kwargs, want)
	}
	for i, m := range msgs[1:] {
		w := wireOf(t, m)
		if hh := w.Headers.(map[string]any); hh["task"] != "tasks.add" || hh["group"] != group.ID() {
			t.Errorf("header %d: %v", i, hh)
		}
		embed := w.Body.([]any)[2].(map[string]any)
		if c, _ := embed["chord"].(map[string]any); c == nil || c["task"] != "tasks.xsum" {
			t.Errorf("header %d carries chord %v", i, embed["chord"])
		}
	}
}

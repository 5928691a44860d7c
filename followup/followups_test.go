package followup_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gworker/gworker/canvas"
	"github.com/gworker/gworker/followup"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

func TestCanvas(t *testing.T) {
	e := newEnv(t)
	e.start()
	ctx := context.Background()
	p := e.producer
	q := map[string]any{"queue": e.queue}

	chain, err := canvas.Chain(canvas.Sig("tasks.add", int64(2), int64(2)).Set(q), canvas.Sig("tasks.add", int64(4)).Set(q), canvas.Sig("tasks.add", int64(8)).Set(q)).ApplyAsync(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := e.get(chain); err != nil || v != int64(16) {
		t.Errorf("chain: %v %v", v, err)
	}

	chord, err := canvas.Chord([]*canvas.Signature{canvas.Sig("tasks.add", int64(1), int64(1)).Set(q), canvas.Sig("tasks.add", int64(2), int64(2)).Set(q)},
		canvas.Sig("tasks.xsum").Set(q)).ApplyAsync(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := e.get(chord); err != nil || v != int64(6) {
		t.Errorf("chord: %v %v", v, err)
	}

	failing, err := canvas.Chord([]*canvas.Signature{canvas.Sig("tasks.add", int64(1), int64(1)).Set(q), canvas.Sig("tasks.raise_error").Set(q)},
		canvas.Sig("tasks.xsum").Set(q)).ApplyAsync(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	// As in Celery, Get checks the chord's parents first and raises the
	// failed header part's KeyError if it has already failed; otherwise it
	// waits for the body, which stores ChordError.
	_, err = e.get(failing)
	var perr *protocol.Exception
	if !errors.As(err, &perr) || (perr.Type != "KeyError" && perr.Type != "ChordError") {
		t.Errorf("failing chord: %v", err)
	}
	waitFor(t, "the chord body's failure", 10*time.Second, func() bool { return e.meta(failing.ID()).Status == result.Failure })
	exc, err := protocol.ExceptionFromValue(e.meta(failing.ID()).Result)
	if err != nil || exc.Type != "ChordError" || !strings.Contains(exc.Args[0].(string), "KeyError('boom')") {
		t.Errorf("chord body: %+v %v", exc, err)
	}

	// A group inside a chain becomes a chord whose body is the next task.
	withGroup, err := canvas.Chain(canvas.Sig("tasks.add", int64(1), int64(1)).Set(q),
		canvas.Group(canvas.Sig("tasks.add", int64(10)).Set(q), canvas.Sig("tasks.add", int64(20)).Set(q)).Signature(),
		canvas.Sig("tasks.xsum").Set(q)).ApplyAsync(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := e.get(withGroup); err != nil || v != int64(34) {
		t.Errorf("chain with a group: %v %v", v, err)
	}

	// link and link_error
	linked, err := canvas.Sig("tasks.add", int64(2), int64(2)).Set(q).Link(canvas.Sig("tasks.mul", int64(10)).Set(q)).ApplyAsync(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.get(linked); err != nil {
		t.Fatal(err)
	}
	children, err := linked.Children(ctx)
	if err != nil || len(children) != 1 {
		t.Fatalf("children of a linked task: %v %v", children, err)
	}
	if v, err := e.get(result.NewAsyncResult(children[0].ID(), e.backend)); err != nil || v != int64(40) {
		t.Errorf("link callback: %v %v", v, err)
	}
	errbackID := producer.NewID()
	failed, err := canvas.Sig("tasks.raise_error").Set(q).LinkError(canvas.Sig("tasks.echo").Set(map[string]any{"queue": e.queue, "task_id": errbackID})).ApplyAsync(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.get(failed)
	wantException(t, err, "KeyError")
	// The old-style errback gets the failed task's id.
	if v, err := e.get(result.NewAsyncResult(errbackID, e.backend)); err != nil || v != failed.ID() {
		t.Errorf("errback: %v %v", v, err)
	}
	// A failure in a chain fails every later task id.
	failChain, err := canvas.Chain(canvas.Sig("tasks.raise_error").Set(q), canvas.Sig("tasks.add", int64(1)).Set(q), canvas.Sig("tasks.add", int64(2)).Set(q)).ApplyAsync(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the chain's last task to fail", 10*time.Second, func() bool { return e.meta(failChain.ID()).Status == result.Failure })
}

// A client whose backend cannot count chord parts sends celery.chord_unlock
// (as in the captured message v2_chord_unlock); the worker polls the header
// and sends the body when every part is done.
func TestChordUnlock(t *testing.T) {
	e := newEnv(t)
	e.start()
	slow := e.send("tasks.sleep", []any{0.3}, nil)
	fast := e.send("tasks.add", []any{int64(2), int64(3)}, nil)
	bodyID := producer.NewID()
	body := canvas.Sig("tasks.xsum").Set(map[string]any{"task_id": bodyID, "queue": e.queue}).Value()
	unlock := e.send(followup.ChordUnlockTask, []any{producer.NewID(), body}, map[string]any{
		"interval": 0.1, "max_retries": nil,
		"result": []any{slow.AsTuple(), fast.AsTuple()},
	}, producer.IgnoreResult(true))
	_ = unlock
	v, err := e.get(result.NewAsyncResult(bodyID, e.backend))
	if err != nil || v != 5.3 {
		t.Fatalf("chord body: %v %v", v, err)
	}
}

package worker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

type errbackCall struct {
	id, task string
	exc      *protocol.Exception
	inTask   bool
}

// A failed task's errback registered with RegisterErrback is called
// inline with the failed task's request and exception; an errback that is
// a plain task is still sent with the failed task's id; a message calling
// the new-style errback as a task fails with TypeError.
func TestNewStyleErrbackIsCalledInline(t *testing.T) {
	var mu sync.Mutex
	var calls []errbackCall
	old := make(chan string, 1)
	e := newEnv(t, func(_ *worker.Config, r *worker.Registry) {
		if err := r.RegisterErrback("t.on_error", func(ctx context.Context, req *worker.Request, exc *protocol.Exception, tb string) (any, error) {
			_, inTask := worker.RequestFromContext(ctx)
			mu.Lock()
			calls = append(calls, errbackCall{req.ID, req.Task, exc, inTask})
			mu.Unlock()
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		r.MustRegister("t.old_style", func(id string) { old <- id }, worker.Params("task_id"))
	})
	e.start()
	r := e.send("tasks.raise_error", nil, map[string]any{"message": "x"},
		producer.LinkError(protocol.Signature{Task: "t.on_error"}, protocol.Signature{Task: "t.old_style"}))
	if _, err := e.get(r); err == nil {
		t.Fatal("raise_error succeeded")
	}
	select {
	case id := <-old:
		if id != r.ID() {
			t.Errorf("old-style errback got %q, want the failed task's id %q", id, r.ID())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("old-style errback not sent")
	}
	waitFor(t, "the inline errback", 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(calls) > 0 })
	mu.Lock()
	c := calls[0]
	n := len(calls)
	mu.Unlock()
	if n != 1 || c.id != r.ID() || c.task != "tasks.raise_error" || c.exc == nil || c.exc.Type != "KeyError" || !c.inTask {
		t.Errorf("inline errback calls %d, first %+v", n, c)
	}
	_, err := e.get(e.send("t.on_error", []any{"some-id"}, nil))
	wantException(t, err, "TypeError")
}

// A task registered with InlineErrback runs as a task when it is sent, and
// inline when it is an errback, as a Python task taking *args does.
func TestInlineErrbackOfARegisteredTask(t *testing.T) {
	inline := make(chan string, 1)
	e := newEnv(t, func(_ *worker.Config, r *worker.Registry) {
		r.MustRegister("t.both", func(x int64) int64 { return x * 2 }, worker.Params("x"),
			worker.InlineErrback(func(_ context.Context, req *worker.Request, _ *protocol.Exception, _ string) (any, error) {
				inline <- req.ID
				return nil, nil
			}))
	})
	e.start()
	r := e.send("tasks.raise_error", nil, map[string]any{"message": "x"},
		producer.LinkError(protocol.Signature{Task: "t.both"}))
	if _, err := e.get(r); err == nil {
		t.Fatal("raise_error succeeded")
	}
	select {
	case id := <-inline:
		if id != r.ID() {
			t.Errorf("inline errback got request %q, want %q", id, r.ID())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the errback was not called inline")
	}
	if v, err := e.get(e.send("t.both", []any{int64(21)}, nil)); err != nil || v != int64(42) {
		t.Errorf("as a task: %v, %v", v, err)
	}
	if err := worker.InlineErrback(nil)(nil); err == nil {
		t.Error("InlineErrback(nil) accepted")
	}
}

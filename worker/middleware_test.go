package worker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// seen is what a recording middleware saw of one run.
type seen struct {
	name, id string
	retries  int
	err      error
	ctxValue any
}

type ctxKey struct{}

// recorder is a middleware that puts a value in the task's context and
// records each run and how it ended.
type recorder struct {
	mu    sync.Mutex
	order []string
	runs  []seen
}

func (r *recorder) middleware(tag string) worker.Middleware {
	return func(next worker.RunFunc) worker.RunFunc {
		return func(ctx context.Context, req *worker.Request) error {
			r.mu.Lock()
			r.order = append(r.order, tag+" before "+req.Task)
			r.mu.Unlock()
			err := next(context.WithValue(ctx, ctxKey{}, tag), req)
			r.mu.Lock()
			r.order = append(r.order, tag+" after "+req.Task)
			if tag == "inner" {
				r.runs = append(r.runs, seen{name: req.Task, id: req.ID, retries: req.Retries, err: err})
			}
			r.mu.Unlock()
			return err
		}
	}
}

func (r *recorder) runsOf(id string) []seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []seen
	for _, s := range r.runs {
		if s.id == id {
			out = append(out, s)
		}
	}
	return out
}

func withMiddleware(mws ...worker.Middleware) envOption {
	return func(c *worker.Config, _ *worker.Registry) { c.Middleware = mws }
}

func TestMiddlewareWrapsEveryRunAndSeesItsOutcome(t *testing.T) {
	rec := &recorder{}
	var taskSaw sync.Map
	e := newEnv(t, withMiddleware(rec.middleware("outer"), rec.middleware("inner")),
		func(_ *worker.Config, reg *worker.Registry) {
			reg.MustRegister("mw.ctx", func(ctx context.Context) (string, error) {
				req, _ := worker.RequestFromContext(ctx)
				taskSaw.Store(req.ID, ctx.Value(ctxKey{}))
				return "ok", nil
			})
		})
	e.start()

	ok := e.send("mw.ctx", nil, nil)
	if v, err := e.get(ok); err != nil || v != "ok" {
		t.Fatalf("mw.ctx: %v %v", v, err)
	}
	fail := e.send("tasks.raise_error", nil, map[string]any{"message": "gone"})
	if _, err := e.get(fail); err == nil {
		t.Fatal("raise_error succeeded")
	}
	flaky := e.send("tasks.flaky", []any{int64(1)}, nil)
	if v, err := e.get(flaky); err != nil || v != int64(1) {
		t.Fatalf("flaky: %v %v", v, err)
	}
	e.stop()

	// The task's context derives from the one the middleware passed on.
	if v, _ := taskSaw.Load(ok.ID()); v != "inner" {
		t.Errorf("the task saw %v in its context, want the inner middleware's value", v)
	}
	if runs := rec.runsOf(ok.ID()); len(runs) != 1 || runs[0].err != nil || runs[0].name != "mw.ctx" {
		t.Errorf("success: %+v", runs)
	}
	runs := rec.runsOf(fail.ID())
	var tf *worker.TaskFailedError
	var exc *protocol.Exception
	if len(runs) != 1 || !errors.As(runs[0].err, &tf) || !errors.As(runs[0].err, &exc) || exc.Type != "KeyError" {
		t.Fatalf("failure: %+v", runs)
	}
	if tf.Err == nil {
		t.Error("TaskFailedError.Err: want the task's own error")
	}
	// The retried task: a RetryError, then success on its second run.
	runs = rec.runsOf(flaky.ID())
	var re *worker.RetryError
	if len(runs) != 2 || !errors.As(runs[0].err, &re) || runs[0].retries != 0 || runs[1].err != nil || runs[1].retries != 1 {
		t.Fatalf("retry: %+v", runs)
	}
	// The first middleware is the outermost.
	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := []string{"outer before mw.ctx", "inner before mw.ctx", "inner after mw.ctx", "outer after mw.ctx"}
	if fmt.Sprint(rec.order[:4]) != fmt.Sprint(want) {
		t.Errorf("order %v, want %v", rec.order[:4], want)
	}
}

// The follow-ups of a task are sent inside its middleware: the task's
// result is stored and its callback sent before next returns.
func TestMiddlewareNextReturnsAfterTheFollowups(t *testing.T) {
	var e *env
	var storedBefore, stateOK bool
	mw := func(next worker.RunFunc) worker.RunFunc {
		return func(ctx context.Context, req *worker.Request) error {
			err := next(ctx, req)
			if req.Task == "tasks.add" {
				m, _ := e.backend.Get(context.Background(), req.ID)
				storedBefore = m != nil && m.Status == result.Success
				stateOK = err == nil
			}
			return err
		}
	}
	e = newEnv(t, withMiddleware(mw))
	e.start()
	r := e.send("tasks.add", []any{int64(1), int64(2)}, nil)
	if v, err := e.get(r); err != nil || v != int64(3) {
		t.Fatalf("add: %v %v", v, err)
	}
	e.stop()
	if !storedBefore || !stateOK {
		t.Errorf("result stored before next returned: %v, nil error: %v", storedBefore, stateOK)
	}
}

// A middleware that does not call next decides the outcome; a panic in
// one fails the task; the worker goes on.
func TestMiddlewareThatSkipsOrPanics(t *testing.T) {
	ran := make(chan string, 10)
	mw := func(next worker.RunFunc) worker.RunFunc {
		return func(ctx context.Context, req *worker.Request) error {
			switch req.Args[0] {
			case "deny":
				return worker.PyError("PermissionError", "denied")
			case "skip":
				return nil
			case "panic":
				panic("middleware bug")
			case "twice":
				_ = next(ctx, req)
				if err := next(ctx, req); err == nil {
					t.Error("a second next succeeded")
				}
				return nil
			}
			return next(ctx, req)
		}
	}
	e := newEnv(t, withMiddleware(mw), func(_ *worker.Config, reg *worker.Registry) {
		reg.MustRegister("mw.echo", func(s string) string { ran <- s; return s })
	})
	e.start()
	deny := e.send("mw.echo", []any{"deny"}, nil)
	skip := e.send("mw.echo", []any{"skip"}, nil)
	pan := e.send("mw.echo", []any{"panic"}, nil)
	twice := e.send("mw.echo", []any{"twice"}, nil)
	run := e.send("mw.echo", []any{"run"}, nil)

	_, err := e.get(deny)
	wantException(t, err, "PermissionError")
	if v, err := e.get(skip); err != nil || v != nil {
		t.Errorf("skip: %v %v", v, err)
	}
	_, err = e.get(pan)
	if exc := wantException(t, err, "RuntimeError"); exc.Args[0] != "panic: middleware bug" {
		t.Errorf("panic: %v", exc.Args)
	}
	if v, err := e.get(twice); err != nil || v != "twice" {
		t.Errorf("twice: %v %v", v, err)
	}
	if v, err := e.get(run); err != nil || v != "run" {
		t.Errorf("run: %v %v", v, err)
	}
	e.stop()
	close(ran)
	var got []string
	for s := range ran {
		got = append(got, s)
	}
	if len(got) != 2 {
		t.Errorf("the task function ran for %v, want twice and run only", got)
	}
}

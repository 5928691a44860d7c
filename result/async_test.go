package result_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// storeLater stores m once the waiter has had a chance to start waiting.
func storeLater(t *testing.T, b result.Backend, m *result.Meta) <-chan error {
	forgetLater(t, b, m.TaskID)
	done := make(chan error, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		done <- b.Store(context.Background(), m)
	}()
	return done
}

func TestGetWaits(t *testing.T) {
	rb := newRedisBackend(t)
	for name, b := range map[string]result.Backend{"native": rb, "poll": pollOnly{rb}} {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			id := testenv.UUID()
			done := storeLater(t, b, success(id, int64(4)))
			r := result.NewAsyncResult(id, b)
			v, err := r.Get(ctx, result.WithInterval(10*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if v != int64(4) {
				t.Errorf("got %#v", v)
			}
			n, err := result.As[int](v)
			if err != nil || n != 4 {
				t.Errorf("As[int]: %v %v", n, err)
			}
			for name, f := range map[string]func(context.Context) (bool, error){"ready": r.Ready, "successful": r.Successful} {
				if ok, err := f(ctx); !ok || err != nil {
					t.Errorf("%s: %v %v", name, ok, err)
				}
			}
			if failed, err := r.Failed(ctx); failed || err != nil {
				t.Errorf("failed: %v %v", failed, err)
			}
		})
	}
}

func TestGetFailure(t *testing.T) {
	rb := newRedisBackend(t)
	ctx := testCtx(t)
	id := testenv.UUID()
	store(t, rb, failure(id, protocol.NewException("KeyError", "missing")))
	r := result.NewAsyncResult(id, rb)

	_, err := r.Get(ctx)
	var te *result.TaskError
	if !errors.As(err, &te) {
		t.Fatalf("err %v (%T), want *TaskError", err, err)
	}
	if te.TaskID != id || te.State != result.Failure || te.Traceback == "" {
		t.Errorf("TaskError %+v", te)
	}
	var exc *protocol.Exception
	if !errors.As(err, &exc) || exc.Type != "KeyError" || exc.Module != "builtins" || !reflect.DeepEqual(exc.Args, []any{"missing"}) {
		t.Fatalf("exception %#v", exc)
	}
	var pe protocol.PythonError
	if !errors.As(err, &pe) || pe.PythonException().Type != "KeyError" {
		t.Errorf("PythonError: %v", pe)
	}

	v, err := r.Get(ctx, result.WithPropagate(false))
	if err != nil {
		t.Fatal(err)
	}
	if te, ok := v.(*result.TaskError); !ok || te.Exception.Type != "KeyError" {
		t.Errorf("value %#v", v)
	}
	res, err := r.Result(ctx)
	if e, ok := res.(*protocol.Exception); err != nil || !ok || e.Type != "KeyError" {
		t.Errorf("Result: %#v %v", res, err)
	}
	tb, err := r.Traceback(ctx)
	if err != nil || tb == "" {
		t.Errorf("Traceback: %q %v", tb, err)
	}
	if failed, err := r.Failed(ctx); !failed || err != nil {
		t.Errorf("Failed: %v %v", failed, err)
	}
}

func TestGetRevoked(t *testing.T) {
	rb := newRedisBackend(t)
	ctx := testCtx(t)
	id := testenv.UUID()
	now := time.Now()
	store(t, rb, &result.Meta{TaskID: id, Status: result.Revoked, DateDone: &now,
		Result: &protocol.Exception{Type: "TaskRevokedError", Module: "celery.exceptions", Args: []any{"revoked"}}})
	_, err := result.NewAsyncResult(id, rb).Get(ctx)
	var te *result.TaskError
	if !errors.As(err, &te) || te.State != result.Revoked || te.Exception.Type != "TaskRevokedError" {
		t.Fatalf("err %v", err)
	}
}

func TestGetTimeout(t *testing.T) {
	rb := newRedisBackend(t)
	for name, b := range map[string]result.Backend{"native": rb, "poll": pollOnly{rb}} {
		t.Run(name, func(t *testing.T) {
			r := result.NewAsyncResult(testenv.UUID(), b)
			_, err := r.Get(context.Background(), result.WithTimeout(30*time.Millisecond), result.WithInterval(5*time.Millisecond))
			if !errors.Is(err, result.ErrTimeout) || err.Error() != "The operation timed out." {
				t.Errorf("err %v, want ErrTimeout", err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if _, err := r.Get(ctx); !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled: err %v", err)
			}
			if s, err := r.State(context.Background()); s != result.Pending || err != nil {
				t.Errorf("state %v %v", s, err)
			}
		})
	}
}

func TestNoBackend(t *testing.T) {
	ctx := context.Background()
	r := result.NewAsyncResult("x", nil)
	if _, err := r.Get(ctx); !errors.Is(err, result.ErrNoBackend) {
		t.Errorf("Get: %v", err)
	}
	if _, err := r.State(ctx); !errors.Is(err, result.ErrNoBackend) {
		t.Errorf("State: %v", err)
	}
	if err := r.Forget(ctx); !errors.Is(err, result.ErrNoBackend) {
		t.Errorf("Forget: %v", err)
	}
	g := result.NewGroupResult("g", nil, r)
	if err := g.Save(ctx); !errors.Is(err, result.ErrNoBackend) {
		t.Errorf("Save: %v", err)
	}
	if _, err := result.RestoreGroup(ctx, nil, "g"); !errors.Is(err, result.ErrNoBackend) {
		t.Errorf("RestoreGroup: %v", err)
	}
	if _, err := g.Get(ctx); !errors.Is(err, result.ErrNoBackend) {
		t.Errorf("group Get: %v", err)
	}
	// A backend that cannot store groups.
	p := pollOnly{newRedisBackend(t)}
	g = result.NewGroupResult("g", p, r)
	if err := g.Save(ctx); !errors.Is(err, result.ErrNoBackend) {
		t.Errorf("Save on a non-GroupStore: %v", err)
	}
	if err := g.Delete(ctx); !errors.Is(err, result.ErrNoBackend) {
		t.Errorf("Delete on a non-GroupStore: %v", err)
	}
	if _, err := result.RestoreGroup(ctx, p, "g"); !errors.Is(err, result.ErrNoBackend) {
		t.Errorf("RestoreGroup on a non-GroupStore: %v", err)
	}
}

func TestGetChainParentFailed(t *testing.T) {
	rb := newRedisBackend(t)
	ctx := testCtx(t)
	root, mid, last := testenv.UUID(), testenv.UUID(), testenv.UUID()
	store(t, rb,
		failure(root, protocol.NewException("ValueError", "chain-broke")),
		success(mid, int64(1)))
	forgetLater(t, rb, last)
	r := result.NewAsyncResult(last, rb)
	p := result.NewAsyncResult(mid, rb)
	p.SetParent(result.NewAsyncResult(root, rb))
	r.SetParent(p)
	_, err := r.Get(ctx, result.WithTimeout(5*time.Second))
	var te *result.TaskError
	if !errors.As(err, &te) || te.TaskID != root {
		t.Fatalf("err %v, want the root's failure", err)
	}
	want := []any{[]any{last, []any{[]any{mid, []any{[]any{root, nil}, nil}}, nil}}, nil}
	if !reflect.DeepEqual(r.AsTuple(), want) {
		t.Errorf("AsTuple %v", r.AsTuple())
	}
	if err := r.Forget(ctx); err != nil {
		t.Fatal(err)
	}
	if s, _ := result.NewAsyncResult(root, rb).State(ctx); s != result.Pending {
		t.Errorf("Forget left the root's result: %s", s)
	}
}

func TestChildren(t *testing.T) {
	rb := newRedisBackend(t)
	ctx := testCtx(t)
	id, c1, g, c2 := testenv.UUID(), testenv.UUID(), testenv.UUID(), testenv.UUID()
	m := success(id, "spawned")
	m.Children = []any{
		result.NewAsyncResult(c1, nil),
		result.NewGroupResult(g, nil, result.NewAsyncResult(c2, nil)),
	}
	store(t, rb, m)
	kids, err := result.NewAsyncResult(id, rb).Children(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(kids); !reflect.DeepEqual(got, []string{c1, g}) {
		t.Fatalf("children %v", got)
	}
	if gr, ok := kids[1].(*result.GroupResult); !ok || gr.Len() != 1 || gr.Children()[0].ID() != c2 {
		t.Errorf("nested group %#v", kids[1])
	}
}

func TestGuard(t *testing.T) {
	rb := newRedisBackend(t)
	base := testCtx(t)
	if result.InTask(base) {
		t.Fatal("InTask outside a task")
	}
	id := testenv.UUID()
	store(t, rb, success(id, int64(2)))
	r := result.NewAsyncResult(id, rb)
	rs := result.NewResultSet(r)
	calls := map[string]func(context.Context, ...result.GetOption) error{
		"Get":        func(ctx context.Context, o ...result.GetOption) error { _, err := r.Get(ctx, o...); return err },
		"Join":       func(ctx context.Context, o ...result.GetOption) error { _, err := rs.Join(ctx, o...); return err },
		"JoinNative": func(ctx context.Context, o ...result.GetOption) error { _, err := rs.JoinNative(ctx, o...); return err },
		"Set.Get":    func(ctx context.Context, o ...result.GetOption) error { _, err := rs.Get(ctx, o...); return err },
		"no backend": func(ctx context.Context, o ...result.GetOption) error {
			_, err := result.NewAsyncResult("x", nil).Get(ctx, o...)
			if errors.Is(err, result.ErrNoBackend) {
				return nil
			}
			return err
		},
	}
	task := result.MarkTask(base)
	if !result.InTask(task) {
		t.Fatal("MarkTask: not InTask")
	}
	allowed := result.AllowJoinResult(task)
	if !result.InTask(allowed) {
		t.Fatal("AllowJoinResult left the task")
	}
	for name, call := range calls {
		if err := call(base); err != nil {
			t.Errorf("%s outside a task: %v", name, err)
		}
		err := call(task)
		if !errors.Is(err, result.ErrWouldBlock) {
			t.Errorf("%s in a task: err %v, want ErrWouldBlock", name, err)
		}
		if err := call(task, result.WithDisableSyncSubtasks(false)); err != nil {
			t.Errorf("%s with WithDisableSyncSubtasks(false): %v", name, err)
		}
		if err := call(allowed); err != nil {
			t.Errorf("%s under AllowJoinResult: %v", name, err)
		}
		if err := call(allowed, result.WithDisableSyncSubtasks(true)); err != nil {
			t.Errorf("%s under AllowJoinResult, explicit default: %v", name, err)
		}
		// A context derived from a task context is still in the task.
		child, cancel := context.WithCancel(task)
		if err := call(child); !errors.Is(err, result.ErrWouldBlock) {
			t.Errorf("%s in a derived context: %v", name, err)
		}
		cancel()
	}
}

func BenchmarkGuardOutsideTask(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := result.NewAsyncResult("x", nil)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = r.Get(ctx)
	}
}

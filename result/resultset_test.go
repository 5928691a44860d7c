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

// rs := ResultSet([add.delay(1, 1), add.delay(2, 2), add.delay(4, 4)])
// rs.get(timeout=10) == [2, 4, 8], on both join paths.
func TestResultSetGet(t *testing.T) {
	rb := newRedisBackend(t)
	for name, b := range map[string]result.Backend{"native": rb, "poll": pollOnly{rb}} {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			a, c, d := testenv.UUID(), testenv.UUID(), testenv.UUID()
			store(t, rb, success(a, int64(2)))
			done1 := storeLater(t, b, success(c, int64(4)))
			done2 := storeLater(t, b, success(d, int64(8)))
			rs := result.NewResultSet(result.NewAsyncResult(a, b), result.NewAsyncResult(c, b), result.NewAsyncResult(d, b))
			if got := rs.SupportsNativeJoin(); got != (name == "native") {
				t.Errorf("SupportsNativeJoin = %v", got)
			}
			vals, err := rs.Get(ctx, result.WithTimeout(10*time.Second), result.WithInterval(5*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			if err := errors.Join(<-done1, <-done2); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(vals, []any{int64(2), int64(4), int64(8)}) {
				t.Fatalf("got %v", vals)
			}
			ints, err := result.As[[]int](vals)
			if err != nil || !reflect.DeepEqual(ints, []int{2, 4, 8}) {
				t.Errorf("As[[]int]: %v %v", ints, err)
			}
			for name, f := range map[string]func(context.Context) (bool, error){"Ready": rs.Ready, "Successful": rs.Successful} {
				if ok, err := f(ctx); !ok || err != nil {
					t.Errorf("%s: %v %v", name, ok, err)
				}
			}
			for name, f := range map[string]func(context.Context) (bool, error){"Failed": rs.Failed, "Waiting": rs.Waiting} {
				if ok, err := f(ctx); ok || err != nil {
					t.Errorf("%s: %v %v", name, ok, err)
				}
			}
			if n, err := rs.CompletedCount(ctx); n != 3 || err != nil {
				t.Errorf("CompletedCount: %d %v", n, err)
			}
		})
	}
}

// rs = ResultSet([add.delay(1, 1), raise_error.delay()])
// rs.get(propagate=False) == [2, KeyError(...)]; with propagation the
// KeyError is raised.
func TestResultSetPropagate(t *testing.T) {
	rb := newRedisBackend(t)
	for name, b := range map[string]result.Backend{"native": rb, "poll": pollOnly{rb}} {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			ok, bad, pending := testenv.UUID(), testenv.UUID(), testenv.UUID()
			store(t, rb, success(ok, int64(2)), failure(bad, protocol.NewException("KeyError", "boom")))
			forgetLater(t, rb, pending)
			rs := result.NewResultSet(result.NewAsyncResult(ok, b), result.NewAsyncResult(bad, b))
			vals, err := rs.Get(ctx, result.WithPropagate(false))
			if err != nil {
				t.Fatal(err)
			}
			if len(vals) != 2 || vals[0] != int64(2) {
				t.Fatalf("got %v", vals)
			}
			te, isTE := vals[1].(*result.TaskError)
			var exc *protocol.Exception
			if !isTE || te.TaskID != bad || !errors.As(te, &exc) || exc.Type != "KeyError" {
				t.Fatalf("second value %#v", vals[1])
			}
			rs0, _ := rs.Results()[0].Successful(ctx)
			rs1, _ := rs.Results()[1].Failed(ctx)
			if !rs0 || !rs1 {
				t.Errorf("results[0].successful=%v results[1].failed=%v", rs0, rs1)
			}
			if failed, _ := rs.Failed(ctx); !failed {
				t.Error("Failed = false")
			}
			if okAll, _ := rs.Successful(ctx); okAll {
				t.Error("Successful = true")
			}
			if n, _ := rs.CompletedCount(ctx); n != 1 {
				t.Errorf("CompletedCount = %d, want 1 (successes only)", n)
			}
			if ready, _ := rs.Ready(ctx); !ready {
				t.Error("Ready = false")
			}

			_, err = rs.Get(ctx)
			if !errors.As(err, &te) || te.TaskID != bad {
				t.Fatalf("propagate: err %v", err)
			}
			// A failed member ends the wait even while another is pending.
			rs.Add(result.NewAsyncResult(pending, b))
			_, err = rs.Get(ctx, result.WithInterval(5*time.Millisecond))
			if !errors.As(err, &te) || te.TaskID != bad {
				t.Fatalf("with a pending member: err %v", err)
			}
			if w, _ := rs.Waiting(ctx); !w {
				t.Error("Waiting = false with a pending member")
			}
			_, err = rs.Get(ctx, result.WithPropagate(false), result.WithTimeout(50*time.Millisecond), result.WithInterval(5*time.Millisecond))
			if !errors.Is(err, result.ErrTimeout) {
				t.Errorf("timeout: err %v", err)
			}
		})
	}
}

// A failure that arrives while JoinNative waits ends the join at once.
func TestJoinNativeFailureWhileWaiting(t *testing.T) {
	rb := newRedisBackend(t)
	ctx := testCtx(t)
	bad, pending := testenv.UUID(), testenv.UUID()
	forgetLater(t, rb, pending)
	done := storeLater(t, rb, failure(bad, protocol.NewException("ValueError", "x")))
	rs := result.NewResultSet(result.NewAsyncResult(pending, rb), result.NewAsyncResult(bad, rb))
	_, err := rs.JoinNative(ctx)
	var te *result.TaskError
	if !errors.As(err, &te) || te.TaskID != bad {
		t.Fatalf("err %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestResultSetNestedGroup(t *testing.T) {
	rb := newRedisBackend(t)
	for name, b := range map[string]result.Backend{"native": rb, "poll": pollOnly{rb}} {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			a, c, d := testenv.UUID(), testenv.UUID(), testenv.UUID()
			store(t, rb, success(a, int64(1)), success(c, int64(2)), success(d, "three"))
			inner := result.NewGroupResult(testenv.UUID(), b, result.NewAsyncResult(c, b), result.NewAsyncResult(d, b))
			outer := result.NewGroupResult(testenv.UUID(), b, result.NewAsyncResult(a, b), inner)
			vals, err := outer.Get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := []any{int64(1), []any{int64(2), "three"}}
			if !reflect.DeepEqual(vals, want) {
				t.Errorf("got %v, want %v", vals, want)
			}
			vals, err = outer.Join(ctx)
			if err != nil || !reflect.DeepEqual(vals, want) {
				t.Errorf("Join: %v %v", vals, err)
			}
		})
	}
}

func TestResultSetMembership(t *testing.T) {
	ctx := context.Background()
	a := result.NewAsyncResult("a", nil)
	rs := result.NewResultSet()
	if rs.SupportsNativeJoin() {
		t.Error("empty set supports native join")
	}
	if vals, err := rs.Get(ctx); err != nil || len(vals) != 0 {
		t.Errorf("empty Get: %v %v", vals, err)
	}
	rs.Add(a)
	rs.Add(result.NewAsyncResult("a", nil)) // same id: not added
	rs.Update(result.NewAsyncResult("b", nil), result.NewAsyncResult("c", nil), a)
	if got := ids(rs.Results()); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Fatalf("after Add/Update: %v", got)
	}
	if err := rs.Remove(a); err != nil {
		t.Fatal(err)
	}
	err := rs.Remove(a)
	if !errors.Is(err, result.ErrNotMember) {
		t.Errorf("Remove of a non-member: %v", err)
	}
	rs.Discard(a)
	rs.Discard(result.NewAsyncResult("b", nil))
	if got := ids(rs.Results()); !reflect.DeepEqual(got, []string{"c"}) {
		t.Fatalf("after Remove/Discard: %v", got)
	}
	rs.Clear()
	if rs.Len() != 0 {
		t.Errorf("Len after Clear = %d", rs.Len())
	}
}

func TestGroupResultSaveRestore(t *testing.T) {
	rb := newRedisBackend(t)
	ctx := testCtx(t)
	gid := testenv.UUID()
	members := make([]result.Result, 5)
	var want []any
	for i := range members {
		id := testenv.UUID()
		store(t, rb, success(id, int64(2*i)))
		members[i] = result.NewAsyncResult(id, rb)
		want = append(want, int64(2*i))
	}
	g := result.NewGroupResult(gid, rb, members...)
	t.Cleanup(func() { _ = g.Delete(context.Background()) })
	if err := g.Save(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := result.RestoreGroup(ctx, rb, gid)
	if err != nil {
		t.Fatal(err)
	}
	if r.ID() != gid || !reflect.DeepEqual(ids(r.Children()), ids(members)) {
		t.Fatalf("restored %s %v", r.ID(), ids(r.Children()))
	}
	if ready, err := r.Ready(ctx); !ready || err != nil {
		t.Fatalf("Ready %v %v", ready, err)
	}
	vals, err := r.Get(ctx)
	if err != nil || !reflect.DeepEqual(vals, want) {
		t.Errorf("Get %v %v", vals, err)
	}
	if err := r.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := result.RestoreGroup(ctx, rb, gid); !errors.Is(err, result.ErrGroupNotFound) {
		t.Errorf("after Delete: %v", err)
	}
}

func TestNilMembers(t *testing.T) {
	ctx := context.Background()
	var nilAsync *result.AsyncResult
	rs := result.NewResultSet(nil, nilAsync, result.NewAsyncResult("a", nil))
	rs.Add(nil)
	rs.Add(nilAsync)
	rs.Discard(nil)
	if err := rs.Remove(nilAsync); !errors.Is(err, result.ErrNotMember) {
		t.Errorf("Remove(nil): %v", err)
	}
	if rs.Len() != 1 {
		t.Fatalf("Len %d", rs.Len())
	}
	r := result.NewAsyncResult("b", nil)
	r.SetParent(nilAsync)
	if _, err := r.Get(ctx); !errors.Is(err, result.ErrNoBackend) {
		t.Errorf("Get: %v", err)
	}
	if tup := r.AsTuple(); !reflect.DeepEqual(tup, []any{[]any{"b", nil}, nil}) {
		t.Errorf("AsTuple %v", tup)
	}
}

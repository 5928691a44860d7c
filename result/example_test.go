package result_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
)

// exampleBackend connects to the local Redis. The examples store results
// directly (as a worker would) so their output does not depend on timing.
func exampleBackend() (*redisbackend.Backend, func()) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	b := redisbackend.New(c, redisbackend.Options{Expires: time.Minute})
	return b, func() { c.Close() }
}

// storeDone plays the worker: it stores a task's return value.
func storeDone(ctx context.Context, b result.Backend, v any) *result.AsyncResult {
	id := testenv.UUID()
	now := time.Now()
	if err := b.Store(ctx, &result.Meta{TaskID: id, Status: result.Success, Result: v, DateDone: &now}); err != nil {
		panic(err)
	}
	return result.NewAsyncResult(id, b)
}

// storeFailed plays the worker for a task that raised exc.
func storeFailed(ctx context.Context, b result.Backend, exc *protocol.Exception) *result.AsyncResult {
	id := testenv.UUID()
	now := time.Now()
	if err := b.Store(ctx, &result.Meta{TaskID: id, Status: result.Failure, Result: exc, DateDone: &now}); err != nil {
		panic(err)
	}
	return result.NewAsyncResult(id, b)
}

// Wait for several tasks and get their values in order; Python:
//
//	rs = ResultSet([add.delay(1, 1), add.delay(2, 2), add.delay(4, 4)])
//	rs.get(timeout=10)  # [2, 4, 8]
func ExampleResultSet_Get() {
	ctx := context.Background()
	b, closeFn := exampleBackend()
	defer closeFn()

	rs := result.NewResultSet(storeDone(ctx, b, 2), storeDone(ctx, b, 4), storeDone(ctx, b, 8))
	defer rs.Forget(ctx)

	values, err := rs.Get(ctx, result.WithTimeout(10*time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(values)
	ints, _ := result.As[[]int](values)
	fmt.Println(ints)

	ready, _ := rs.Ready(ctx)
	successful, _ := rs.Successful(ctx)
	failed, _ := rs.Failed(ctx)
	completed, _ := rs.CompletedCount(ctx)
	fmt.Println(ready, successful, failed, completed)
	// Output:
	// [2 4 8]
	// [2 4 8]
	// true true false 3
}

// Get the values without failing on a failed member; Python:
//
//	rs = ResultSet([add.delay(1, 1), raise_error.delay()])
//	rs.get(propagate=False)  # [2, KeyError('...')]
//
// In Go the failed member's place holds its *result.TaskError, which
// unwraps to the *protocol.Exception.
func ExampleResultSet_Get_propagateFalse() {
	ctx := context.Background()
	b, closeFn := exampleBackend()
	defer closeFn()

	rs := result.NewResultSet(storeDone(ctx, b, 2), storeFailed(ctx, b, protocol.NewException("KeyError", "missing")))
	defer rs.Forget(ctx)

	values, err := rs.Get(ctx, result.WithPropagate(false))
	if err != nil {
		fmt.Println(err)
		return
	}
	var exc *protocol.Exception
	if errors.As(values[1].(error), &exc) {
		fmt.Println(values[0], exc.Type, exc.Args)
	}
	first, _ := rs.Results()[0].Successful(ctx)
	second, _ := rs.Results()[1].Failed(ctx)
	fmt.Println(first, second)

	// By default the failure is the error.
	_, err = rs.Get(ctx)
	var te *result.TaskError
	fmt.Println(errors.As(err, &te), errors.As(err, &exc), exc.Type)

	// Only successes are completed.
	n, _ := rs.CompletedCount(ctx)
	fmt.Println(n)
	// Output:
	// 2 KeyError [missing]
	// true true
	// true true KeyError
	// 1
}

// Save a group and restore it later, elsewhere, from its id; Python:
//
//	result = group(add.s(i, i) for i in range(5)).apply_async()
//	result.save()
//	restored = GroupResult.restore(result.id)
func ExampleGroupResult_Save() {
	ctx := context.Background()
	b, closeFn := exampleBackend()
	defer closeFn()

	var members []result.Result
	for i := range 5 {
		members = append(members, storeDone(ctx, b, i+i))
	}
	g := result.NewGroupResult(testenv.UUID(), b, members...)
	defer g.Forget(ctx)
	if err := g.Save(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer g.Delete(ctx)

	restored, err := result.RestoreGroup(ctx, b, g.ID())
	if err != nil {
		fmt.Println(err)
		return
	}
	if ready, _ := restored.Ready(ctx); ready {
		fmt.Println(restored.Get(ctx))
	}
	// Output:
	// [0 2 4 6 8] <nil>
}

// Saving needs a backend that can store groups.
func ExampleGroupResult_Save_noBackend() {
	g := result.NewGroupResult("g1", nil)
	err := g.Save(context.Background())
	fmt.Println(errors.Is(err, result.ErrNoBackend))
	fmt.Println(err)
	// Output:
	// true
	// No result backend is configured. Please see the documentation for more information.
}

// Manage the members of a set; Python's add, update, remove and clear.
func ExampleResultSet_Add() {
	rs := result.NewResultSet()
	res := result.NewAsyncResult("t1", nil)
	rs.Add(res)
	rs.Update(result.NewAsyncResult("t2", nil), result.NewAsyncResult("t3", nil))
	fmt.Println(rs.Len())
	if err := rs.Remove(res); err != nil {
		fmt.Println(err)
	}
	fmt.Println(rs.Remove(res)) // Python raises KeyError
	rs.Discard(res)             // no error
	fmt.Println(rs.Len())
	rs.Clear()
	fmt.Println(rs.Len())
	// Output:
	// 3
	// result not in set: t1
	// 2
	// 0
}

// The Redis backend waits for a whole set at once (one subscription, no
// polling); Get then uses JoinNative.
func ExampleResultSet_SupportsNativeJoin() {
	b, closeFn := exampleBackend()
	defer closeFn()
	rs := result.NewResultSet(result.NewAsyncResult("t1", b))
	fmt.Println(rs.SupportsNativeJoin())
	fmt.Println(result.NewResultSet().SupportsNativeJoin())
	// Output:
	// true
	// false
}

// Inside a task, waiting on another task's result is refused with
// Celery's RuntimeError, unless allowed for one call or for a scope.
func ExampleMarkTask() {
	ctx := result.MarkTask(context.Background()) // the worker does this
	r := result.NewAsyncResult("some-task", nil)

	_, err := r.Get(ctx)
	fmt.Println(errors.Is(err, result.ErrWouldBlock))
	fmt.Print(err)

	// The worker stores it as RuntimeError.
	var pe protocol.PythonError
	if errors.As(err, &pe) {
		fmt.Println(pe.PythonException().Module, pe.PythonException().Type)
	}

	// Allowed explicitly (no backend here, so the wait itself fails).
	_, err = r.Get(ctx, result.WithDisableSyncSubtasks(false))
	fmt.Println(errors.Is(err, result.ErrNoBackend))
	_, err = r.Get(result.AllowJoinResult(ctx))
	fmt.Println(errors.Is(err, result.ErrNoBackend))
	// Output:
	// true
	// Never call result.get() within a task!
	// See http://docs.celeryq.org/en/latest/userguide/tasks.html#task-synchronous-subtasks
	// builtins RuntimeError
	// true
	// true
}

func ExampleAs() {
	type point struct {
		X, Y int
	}
	p, err := result.As[point](map[string]any{"X": int64(1), "Y": int64(2)})
	fmt.Println(p, err)
	_, err = result.As[int]("four")
	fmt.Println(err)
	// Output:
	// {1 2} <nil>
	// cannot convert result value to int: must be int, not str
}

func ExampleFromTuple() {
	// A task whose parent is another task, as stored in "children".
	r, err := result.FromTuple([]any{[]any{"t2", []any{[]any{"t1", nil}, nil}}, nil}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	a := r.(*result.AsyncResult)
	fmt.Println(a.ID(), a.Parent().ID())
	fmt.Println(a.AsTuple())
	// Output:
	// t2 t1
	// [[t2 [[t1 <nil>] <nil>]] <nil>]
}

package result

import "context"

// The deadlock guard. Celery refuses result.get() inside a task, because a
// task waiting for another task can exhaust the pool (Celery's
// disable_sync_subtasks). The worker marks every task's context with
// MarkTask; Get, Join and JoinNative then fail with ErrWouldBlock unless the
// caller allows the wait for one call (WithDisableSyncSubtasks(false)) or
// for a scope (AllowJoinResult).

type guardKey struct{}

// guard flags stored in the context; a uint8 boxes without allocating.
type guardFlags uint8

const (
	guardInTask guardFlags = 1 << iota
	guardAllowed
)

// MarkTask returns a context that says "running inside a task". The worker
// calls it for the context of every task it runs.
func MarkTask(ctx context.Context) context.Context {
	return context.WithValue(ctx, guardKey{}, guardInTask)
}

// AllowJoinResult returns a context in which waiting on results is allowed
// even inside a task, like Celery's allow_join_result() context manager.
// Use it only when the awaited tasks cannot be starved by the waiting one
// (for example, they run on another queue).
func AllowJoinResult(ctx context.Context) context.Context {
	f, _ := ctx.Value(guardKey{}).(guardFlags)
	return context.WithValue(ctx, guardKey{}, f|guardAllowed)
}

// InTask reports whether ctx was marked by MarkTask.
func InTask(ctx context.Context) bool {
	f, _ := ctx.Value(guardKey{}).(guardFlags)
	return f&guardInTask != 0
}

// assertWillNotBlock is Celery's assert_will_not_block: one ctx.Value
// lookup.
func assertWillNotBlock(ctx context.Context) error {
	f, _ := ctx.Value(guardKey{}).(guardFlags)
	if f&guardInTask != 0 && f&guardAllowed == 0 {
		return ErrWouldBlock
	}
	return nil
}

// Package result holds task results as Celery clients see them:
// AsyncResult, ResultSet and GroupResult, the Backend interface that stores
// them (with the optional GroupStore, NativeJoiner and ChordBackend), the
// stored meta codec, and the deadlock guard that stops a task from waiting
// on results.
//
// # Values
//
// Results keep the Python types of the protocol package: an int comes back
// as int64 (or *big.Int), a float as float64, a list as []any, a dict as
// map[string]any. As converts them to Go types:
//
//	v, err := result.NewAsyncResult(id, backend).Get(ctx, result.WithTimeout(10*time.Second))
//	n, err := result.As[int](v)
//
// # Failures
//
// A task that ended in FAILURE or REVOKED makes Get, Join and JoinNative
// fail with a *TaskError, whose Unwrap gives the *protocol.Exception:
// errors.As works for both. With WithPropagate(false) the *TaskError takes
// the place of the value instead (Python puts the exception object there).
//
// # Waiting inside a task
//
// Celery refuses result.get() inside a task, because a task waiting on
// another can starve the pool. The worker marks each task's context with
// MarkTask; Get, Join and JoinNative then fail with ErrWouldBlock, whose
// text is Celery's and which a worker stores as RuntimeError. Allow a wait
// for one call with WithDisableSyncSubtasks(false), or for a scope with
// AllowJoinResult. Outside tasks the check is one context lookup.
//
// # Stored format
//
// EncodeMeta and DecodeMeta read and write the celery-task-meta-<id> value
// byte for byte as Celery 5.2.6 does; AsTuple and FromTuple the result
// tuples used by saved groups and "children". Backends live in
// subpackages (result/redisbackend).
package result

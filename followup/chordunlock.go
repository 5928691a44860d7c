package followup

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/canvas"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// ChordUnlockTask is the name of Celery's builtin that completes chords on
// result backends without native chord support.
const ChordUnlockTask = "celery.chord_unlock"

// RegisterBuiltins registers the Celery builtin tasks a worker must run
// for Python clients: celery.chord_unlock, which a client sends instead of
// counting chord parts when its result backend cannot (args [group_id,
// body], kwargs {interval, max_retries, result}). It polls the header's
// results, retrying itself every interval (1 s by default) until all are
// ready, then sends the body with the ordered results or stores ChordError
// under the body's id. It also registers celery.accumulate (unless the
// registry has it), the body of the chord a group replacing a task becomes.
// When b has a Cleanup method (the SQL backends) it also registers
// celery.backend_cleanup, which calls it.
func RegisterBuiltins(r *worker.Registry, p *producer.Producer, b result.Backend, log *zap.Logger) error {
	if log == nil {
		log = zap.NewNop()
	}
	f := &celeryFollowups{p: p, backend: b, log: log}
	if err := r.Handle(ChordUnlockTask, f.chordUnlock, worker.WithOptions(worker.TaskOptions{IgnoreResult: true, MaxRetries: ptr(-1)})); err != nil {
		return err
	}
	if _, err := r.Lookup(canvas.AccumulateTask); err != nil {
		if err := r.Handle(canvas.AccumulateTask, accumulate); err != nil {
			return err
		}
	}
	if c, ok := b.(backendCleaner); ok {
		if _, err := r.Lookup(BackendCleanupTask); err != nil {
			return r.Handle(BackendCleanupTask, func(ctx context.Context, _ []any, _ map[string]any) (any, error) {
				n, err := c.Cleanup(ctx)
				log.Info("backend cleanup", zap.Int64("deleted", n), zap.Error(err))
				return nil, err
			}, worker.WithOptions(worker.TaskOptions{IgnoreResult: true}))
		}
	}
	return nil
}

// accumulate is Celery's celery.accumulate: args[index], or all args
// when no index is given. A group that replaces a task becomes a chord
// with accumulate(index=0) as its body.
func accumulate(_ context.Context, args []any, kwargs map[string]any) (any, error) {
	idx, ok := kwargs["index"]
	if !ok || idx == nil {
		return args, nil
	}
	i, isInt := idx.(int64)
	if !isInt {
		return nil, worker.PyError("TypeError", fmt.Sprintf("list indices must be integers or slices, not %T", idx))
	}
	if i < 0 {
		i += int64(len(args))
	}
	if i < 0 || i >= int64(len(args)) {
		return nil, worker.PyError("IndexError", "tuple index out of range")
	}
	return args[i], nil
}

// BackendCleanupTask is Celery's builtin that deletes expired results
// from backends that do not expire them themselves (the SQL backends);
// celery beat sends it daily at 4:00 when result_expires is set.
const BackendCleanupTask = "celery.backend_cleanup"

// backendCleaner is a result backend whose expired results are deleted
// by celery.backend_cleanup.
type backendCleaner interface {
	Cleanup(ctx context.Context) (int64, error)
}

func ptr[T any](v T) *T { return &v }

// typeError is the TypeError Python raises for a bad call, as the worker
// reports one for a task called with the wrong arguments.
func typeError(format string, a ...any) error {
	return protocol.NewException("TypeError", fmt.Sprintf(format, a...))
}

// seconds converts Celery's float seconds to a Duration.
func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

func (f *celeryFollowups) chordUnlock(ctx context.Context, args []any, kwargs map[string]any) (any, error) {
	if len(args) != 2 {
		return nil, typeError("unlock_chord() takes 2 positional arguments but %d were given", len(args))
	}
	groupID, ok := args[0].(string)
	if !ok {
		return nil, typeError("unlock_chord() argument 'group_id' must be str, not %s", protocol.TypeName(args[0]))
	}
	body, err := protocol.SignatureFromValue(args[1])
	if err != nil {
		return nil, typeError("unlock_chord() argument 'callback': %v", err)
	}
	tuples, _ := kwargs["result"].([]any)
	interval := time.Second
	if iv, ok := kwargs["interval"].(float64); ok && iv > 0 {
		interval = seconds(iv)
	} else if iv, ok := kwargs["interval"].(int64); ok && iv > 0 {
		interval = time.Duration(iv) * time.Second
	}
	var maxRetries *int
	if mr, ok := kwargs["max_retries"].(int64); ok {
		maxRetries = ptr(int(mr))
	}
	if f.backend == nil {
		return nil, result.ErrNoBackend
	}
	metas := make([]*result.Meta, 0, len(tuples))
	for _, t := range tuples {
		r, err := result.FromTuple(t, f.backend)
		if err != nil {
			return nil, protocol.NewException("ValueError", fmt.Sprintf("unlock_chord(): bad result tuple: %v", err))
		}
		m, err := f.backend.Get(ctx, r.ID())
		if err != nil {
			return nil, err
		}
		if !m.Status.Ready() {
			return nil, &worker.RetryError{Countdown: interval, MaxRetries: maxRetries}
		}
		metas = append(metas, m)
	}
	req, _ := worker.RequestFromContext(ctx)
	msg := &protocol.Message{GroupID: groupID}
	if req != nil {
		msg.ID, msg.RootID = req.ID, req.RootID
	}
	values := make([]any, 0, len(metas))
	for _, m := range metas {
		if m.Status != result.Success {
			reason := fmt.Sprintf("%v", m.Result)
			if exc, err := protocol.ExceptionFromValue(m.Result); err == nil {
				reason = exc.Error()
			}
			return nil, f.chordError(ctx, msg, &body, fmt.Sprintf("Dependency %s raised %s", m.TaskID, reason))
		}
		values = append(values, m.Result)
	}
	if _, err := canvas.ApplyFromMessage(ctx, f.p, body, []any{values}, canvas.ApplyOptions{ParentID: msg.ID, RootID: rootOf(msg)}); err != nil {
		return nil, f.chordError(ctx, msg, &body, fmt.Sprintf("Callback error: %v", err))
	}
	return nil, nil
}

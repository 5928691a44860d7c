package result

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// AsyncResult is the result of one task, Celery's AsyncResult. Its
// methods read the backend; once the task is ready its meta is cached, so
// later calls do not query the backend again. An AsyncResult is safe for
// concurrent use.
type AsyncResult struct {
	id      string
	backend Backend
	parent  Result

	mu    sync.Mutex
	cache *Meta // set once the task is ready
}

// NewAsyncResult returns the result of task id stored in b. b may be nil;
// every method that needs the backend then returns ErrNoBackend.
func NewAsyncResult(id string, b Backend) *AsyncResult {
	return &AsyncResult{id: id, backend: b}
}

// ID returns the task id.
func (r *AsyncResult) ID() string { return r.id }

// String returns the task id, as Python's str() does.
func (r *AsyncResult) String() string { return r.id }

// Backend returns the backend the result is read from (may be nil).
func (r *AsyncResult) Backend() Backend { return r.backend }

// Parent returns the result of the task that came before this one in a
// chain, or nil.
func (r *AsyncResult) Parent() Result { return r.parent }

// SetParent sets the parent result (the previous task of a chain).
func (r *AsyncResult) SetParent(p Result) { r.parent = p }

// AsTuple returns [[id, parent tuple or nil], nil].
func (r *AsyncResult) AsTuple() any {
	return []any{[]any{r.id, parentTuple(r.parent)}, nil}
}

// Meta returns the task's stored meta (a PENDING meta when nothing is
// stored). Ready metas are cached.
func (r *AsyncResult) Meta(ctx context.Context) (*Meta, error) {
	r.mu.Lock()
	c := r.cache
	r.mu.Unlock()
	if c != nil {
		return c, nil
	}
	if r.backend == nil {
		return nil, ErrNoBackend
	}
	m, err := r.backend.Get(ctx, r.id)
	if err != nil {
		return nil, err
	}
	if m.TaskID == "" {
		m.TaskID = r.id
	}
	r.setCache(m)
	return m, nil
}

func (r *AsyncResult) setCache(m *Meta) {
	if m == nil || !m.Status.Ready() {
		return
	}
	r.mu.Lock()
	if r.cache == nil {
		r.cache = m
	}
	r.mu.Unlock()
}

func (r *AsyncResult) cached() *Meta {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cache
}

// State returns the task's state (PENDING when nothing is stored).
func (r *AsyncResult) State(ctx context.Context) (State, error) {
	m, err := r.Meta(ctx)
	if err != nil {
		return "", err
	}
	return m.Status, nil
}

// Ready reports whether the task has finished (SUCCESS, FAILURE, REVOKED).
func (r *AsyncResult) Ready(ctx context.Context) (bool, error) {
	s, err := r.State(ctx)
	return s.Ready(), err
}

// Successful reports whether the task ended in SUCCESS.
func (r *AsyncResult) Successful(ctx context.Context) (bool, error) {
	s, err := r.State(ctx)
	return s == Success, err
}

// Failed reports whether the task ended in FAILURE.
func (r *AsyncResult) Failed(ctx context.Context) (bool, error) {
	s, err := r.State(ctx)
	return s == Failure, err
}

// Result returns the stored result without waiting: the return value for
// SUCCESS, a *protocol.Exception for FAILURE, RETRY and REVOKED (nil if
// none was stored), the state's meta for other states, nil when PENDING.
func (r *AsyncResult) Result(ctx context.Context) (any, error) {
	m, err := r.Meta(ctx)
	if err != nil {
		return nil, err
	}
	if m.Status.Exceptional() {
		if m.Result == nil {
			return nil, nil
		}
		exc, err := exceptionOf(m.Result)
		if err != nil {
			return nil, fmt.Errorf("task %s (%s): %w", r.id, m.Status, err)
		}
		if exc.Traceback == "" {
			exc.Traceback = m.Traceback
		}
		return exc, nil
	}
	return m.Result, nil
}

// Traceback returns the stored traceback text ("" if none).
func (r *AsyncResult) Traceback(ctx context.Context) (string, error) {
	m, err := r.Meta(ctx)
	if err != nil {
		return "", err
	}
	return m.Traceback, nil
}

// Children returns the results of the tasks this task sent while it ran.
func (r *AsyncResult) Children(ctx context.Context) ([]Result, error) {
	m, err := r.Meta(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Result, 0, len(m.Children))
	for _, c := range m.Children {
		cr, err := FromTuple(c, r.backend)
		if err != nil {
			return nil, fmt.Errorf("children of %s: %w", r.id, err)
		}
		out = append(out, cr)
	}
	return out, nil
}

// Forget removes the stored result of the task and of its parents.
func (r *AsyncResult) Forget(ctx context.Context) error {
	r.mu.Lock()
	r.cache = nil
	r.mu.Unlock()
	if !isNil(r.parent) {
		if err := r.parent.Forget(ctx); err != nil {
			return err
		}
	}
	if r.backend == nil {
		return ErrNoBackend
	}
	return r.backend.Forget(ctx, r.id)
}

// Get waits until the task is ready and returns its value.
//
// Inside a task (see MarkTask) it fails with ErrWouldBlock unless allowed.
// With propagation on (the default), a task that ended in FAILURE or
// REVOKED, or whose parent in a chain did, makes Get fail with a
// *TaskError; with WithPropagate(false) the *TaskError is returned as the
// value and the error is nil. Get waits through the backend's NativeJoiner
// when it has one, and polls every WithInterval otherwise. WithTimeout
// bounds the wait (ErrTimeout).
func (r *AsyncResult) Get(ctx context.Context, opts ...GetOption) (any, error) {
	cfg := newGetConfig(opts)
	if cfg.disableSync {
		if err := assertWillNotBlock(ctx); err != nil {
			return nil, err
		}
	}
	ctx, cancel := withTimeout(ctx, cfg.timeout)
	defer cancel()
	v, err := r.get(ctx, cfg)
	return v, timeoutErr(ctx, err)
}

func (r *AsyncResult) get(ctx context.Context, cfg getConfig) (any, error) {
	if r.backend == nil {
		return nil, ErrNoBackend
	}
	if cfg.propagate && !isNil(r.parent) {
		if err := maybeThrowParents(ctx, r.parent); err != nil {
			return nil, err
		}
	}
	m, err := r.wait(ctx, cfg.interval)
	if err != nil {
		return nil, err
	}
	return metaValue(m, cfg.propagate)
}

// wait returns the ready meta of the task.
func (r *AsyncResult) wait(ctx context.Context, interval time.Duration) (*Meta, error) {
	if m := r.cached(); m != nil {
		return m, nil
	}
	if nj, ok := r.backend.(NativeJoiner); ok {
		var got *Meta
		err := nj.WaitReady(ctx, []string{r.id}, func(m *Meta) { got = m })
		if err != nil {
			return nil, err
		}
		if got == nil {
			return nil, fmt.Errorf("result: backend returned without the result of %s", r.id)
		}
		if got.TaskID == "" {
			got.TaskID = r.id
		}
		r.setCache(got)
		return got, nil
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		m, err := r.Meta(ctx)
		if err != nil {
			return nil, err
		}
		if m.Status.Ready() {
			return m, nil
		}
		t.Reset(interval)
	}
}

// metaValue turns a ready meta into Get's value.
func metaValue(m *Meta, propagate bool) (any, error) {
	switch m.Status {
	case Failure, Revoked:
		te := taskError(m)
		if propagate {
			return nil, te
		}
		return te, nil
	}
	return m.Result, nil
}

// maybeThrow returns the *TaskError of a failed or revoked task, without
// waiting.
func (r *AsyncResult) maybeThrow(ctx context.Context) error {
	m, err := r.Meta(ctx)
	if err != nil {
		return err
	}
	if m.Status == Failure || m.Status == Revoked {
		return taskError(m)
	}
	return nil
}

// maybeThrowParents checks the chain of parents, oldest first, as Celery's
// _maybe_reraise_parent_error does.
func maybeThrowParents(ctx context.Context, p Result) error {
	var chain []Result
	for n := p; !isNil(n) && len(chain) < maxTupleDepth; {
		chain = append(chain, n)
		switch x := n.(type) {
		case *AsyncResult:
			n = x.parent
		case *GroupResult:
			n = x.parent
		default:
			n = nil
		}
	}
	for i := len(chain) - 1; i >= 0; i-- {
		if err := maybeThrow(ctx, chain[i]); err != nil {
			return err
		}
	}
	return nil
}

func maybeThrow(ctx context.Context, r Result) error {
	switch x := r.(type) {
	case *AsyncResult:
		return x.maybeThrow(ctx)
	case *GroupResult:
		for _, c := range x.results {
			if err := maybeThrow(ctx, c); err != nil {
				return err
			}
		}
	}
	return nil
}

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeoutCause(ctx, d, ErrTimeout)
}

// timeoutErr replaces the context error of a wait that ran out of its
// WithTimeout by ErrTimeout.
func timeoutErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) &&
		errors.Is(context.Cause(ctx), ErrTimeout) {
		return ErrTimeout
	}
	return err
}

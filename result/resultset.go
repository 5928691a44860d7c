package result

import (
	"context"
	"fmt"
	"sync"
)

// ResultSet is a list of results waited on together, Celery's ResultSet.
// Members are *AsyncResult or *GroupResult (a nested group).
//
// Values come back in the set's order. With WithPropagate(false), the place
// of a member that ended in FAILURE or REVOKED holds its *TaskError (whose
// Unwrap gives the *protocol.Exception); Python holds the exception object
// there. A nested *GroupResult member contributes its own []any.
//
// The set's membership methods are not safe for concurrent use with each
// other or with waits; waiting from several goroutines is.
type ResultSet struct {
	results []Result
}

// NewResultSet returns a set of the given results, in order. Nil results
// are left out.
func NewResultSet(results ...Result) *ResultSet {
	rs := &ResultSet{results: make([]Result, 0, len(results))}
	for _, r := range results {
		if !isNil(r) {
			rs.results = append(rs.results, r)
		}
	}
	return rs
}

// isNil reports whether r is nil or a nil pointer of a known type.
func isNil(r Result) bool {
	switch x := r.(type) {
	case nil:
		return true
	case *AsyncResult:
		return x == nil
	case *GroupResult:
		return x == nil || x.ResultSet == nil
	}
	return false
}

// Results returns the members in order. The slice is a copy.
func (s *ResultSet) Results() []Result {
	return append([]Result(nil), s.results...)
}

// Len returns the number of members.
func (s *ResultSet) Len() int { return len(s.results) }

func (s *ResultSet) index(r Result) int {
	for i, m := range s.results {
		if m.ID() == r.ID() {
			return i
		}
	}
	return -1
}

// Add appends r unless a result with the same id is already a member (or
// r is nil).
func (s *ResultSet) Add(r Result) {
	if !isNil(r) && s.index(r) < 0 {
		s.results = append(s.results, r)
	}
}

// Update adds each result not yet a member, in order.
func (s *ResultSet) Update(results ...Result) {
	for _, r := range results {
		s.Add(r)
	}
}

// Remove removes the member with r's id, or returns an error wrapping
// ErrNotMember (Celery raises KeyError).
func (s *ResultSet) Remove(r Result) error {
	if isNil(r) {
		return fmt.Errorf("%w: nil", ErrNotMember)
	}
	i := s.index(r)
	if i < 0 {
		return fmt.Errorf("%w: %s", ErrNotMember, r.ID())
	}
	s.results = append(s.results[:i], s.results[i+1:]...)
	return nil
}

// Discard removes the member with r's id if there is one.
func (s *ResultSet) Discard(r Result) {
	_ = s.Remove(r)
}

// Clear removes every member.
func (s *ResultSet) Clear() { s.results = nil }

// each runs f on every member until f returns true or an error.
func (s *ResultSet) each(ctx context.Context, f func(Result) (bool, error)) error {
	for _, r := range s.results {
		stop, err := f(r)
		if err != nil || stop {
			return err
		}
	}
	return nil
}

// Ready reports whether every member is ready.
func (s *ResultSet) Ready(ctx context.Context) (bool, error) {
	ready := true
	err := s.each(ctx, func(r Result) (bool, error) {
		ok, err := r.Ready(ctx)
		ready = ready && ok
		return !ok, err
	})
	return ready, err
}

// Successful reports whether every member ended in SUCCESS.
func (s *ResultSet) Successful(ctx context.Context) (bool, error) {
	all := true
	err := s.each(ctx, func(r Result) (bool, error) {
		ok, err := r.Successful(ctx)
		all = all && ok
		return !ok, err
	})
	return all, err
}

// Failed reports whether any member ended in FAILURE.
func (s *ResultSet) Failed(ctx context.Context) (bool, error) {
	anyFailed := false
	err := s.each(ctx, func(r Result) (bool, error) {
		ok, err := r.Failed(ctx)
		anyFailed = anyFailed || ok
		return ok, err
	})
	return anyFailed, err
}

// Waiting reports whether any member is not ready yet.
func (s *ResultSet) Waiting(ctx context.Context) (bool, error) {
	ready, err := s.Ready(ctx)
	return !ready, err
}

// CompletedCount returns the number of members that ended in SUCCESS
// (failed members are not counted, as in Celery).
func (s *ResultSet) CompletedCount(ctx context.Context) (int, error) {
	n := 0
	err := s.each(ctx, func(r Result) (bool, error) {
		ok, err := r.Successful(ctx)
		if ok {
			n++
		}
		return false, err
	})
	return n, err
}

// Forget removes the stored result of every member.
func (s *ResultSet) Forget(ctx context.Context) error {
	return s.each(ctx, func(r Result) (bool, error) { return false, r.Forget(ctx) })
}

// SupportsNativeJoin reports whether the first member's backend is a
// NativeJoiner (false for an empty set), as Celery decides.
func (s *ResultSet) SupportsNativeJoin() bool {
	return s.nativeJoiner() != nil
}

func (s *ResultSet) nativeJoiner() NativeJoiner {
	if len(s.results) == 0 {
		return nil
	}
	switch r := s.results[0].(type) {
	case *AsyncResult:
		nj, _ := r.backend.(NativeJoiner)
		return nj
	case *GroupResult:
		return r.ResultSet.nativeJoiner()
	}
	return nil
}

// Get returns the values of every member in order: JoinNative when the
// backend supports it, Join otherwise.
func (s *ResultSet) Get(ctx context.Context, opts ...GetOption) ([]any, error) {
	if s.SupportsNativeJoin() {
		return s.JoinNative(ctx, opts...)
	}
	return s.Join(ctx, opts...)
}

// Join waits for each member in turn and returns their values in order.
// WithTimeout bounds the whole join. With propagation on, the first failed
// member (in set order) ends the join with its *TaskError.
func (s *ResultSet) Join(ctx context.Context, opts ...GetOption) ([]any, error) {
	cfg := newGetConfig(opts)
	if cfg.disableSync {
		if err := assertWillNotBlock(ctx); err != nil {
			return nil, err
		}
	}
	ctx, cancel := withTimeout(ctx, cfg.timeout)
	defer cancel()
	out, err := s.join(ctx, cfg)
	return out, timeoutErr(ctx, err)
}

func (s *ResultSet) join(ctx context.Context, cfg getConfig) ([]any, error) {
	out := make([]any, len(s.results))
	for i, r := range s.results {
		v, err := memberGet(ctx, r, cfg, false)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func memberGet(ctx context.Context, r Result, cfg getConfig, native bool) (any, error) {
	switch x := r.(type) {
	case *AsyncResult:
		return x.get(ctx, cfg)
	case *GroupResult:
		if native && x.SupportsNativeJoin() {
			return x.joinNative(ctx, cfg)
		}
		return x.join(ctx, cfg)
	case nil:
		return nil, fmt.Errorf("result: nil member in result set")
	}
	return nil, fmt.Errorf("result: unsupported result type %T", r)
}

// JoinNative waits for every member at once through the backend's
// NativeJoiner (one subscription for the whole set on Redis) and returns
// the values in the set's order. With propagation on it returns as soon as
// a member is found failed. On a backend without native join it is Join.
func (s *ResultSet) JoinNative(ctx context.Context, opts ...GetOption) ([]any, error) {
	cfg := newGetConfig(opts)
	if cfg.disableSync {
		if err := assertWillNotBlock(ctx); err != nil {
			return nil, err
		}
	}
	ctx, cancel := withTimeout(ctx, cfg.timeout)
	defer cancel()
	out, err := s.joinNative(ctx, cfg)
	return out, timeoutErr(ctx, err)
}

func (s *ResultSet) joinNative(ctx context.Context, cfg getConfig) ([]any, error) {
	nj := s.nativeJoiner()
	if nj == nil {
		return s.join(ctx, cfg)
	}
	// Members already known to have failed end the join first, in order.
	var ids []string
	seen := make(map[string]bool)
	for _, r := range s.results {
		a, ok := r.(*AsyncResult)
		if !ok {
			continue
		}
		if m := a.cached(); m != nil {
			if cfg.propagate && (m.Status == Failure || m.Status == Revoked) {
				return nil, taskError(m)
			}
			continue
		}
		if !seen[a.id] {
			seen[a.id] = true
			ids = append(ids, a.id)
		}
	}
	if len(ids) > 0 {
		got := make(map[string]*Meta, len(ids))
		var (
			mu      sync.Mutex
			failure *TaskError
		)
		wctx, stop := context.WithCancel(ctx)
		err := nj.WaitReady(wctx, ids, func(m *Meta) {
			mu.Lock()
			defer mu.Unlock()
			got[m.TaskID] = m
			if cfg.propagate && failure == nil && (m.Status == Failure || m.Status == Revoked) {
				failure = taskError(m)
				stop()
			}
		})
		stop()
		mu.Lock()
		f := failure
		mu.Unlock()
		if f != nil {
			return nil, f
		}
		if err != nil {
			return nil, err
		}
		for _, r := range s.results {
			if a, ok := r.(*AsyncResult); ok && a.cached() == nil {
				if m := got[a.id]; m != nil {
					a.setCache(m)
				}
			}
		}
	}
	out := make([]any, len(s.results))
	for i, r := range s.results {
		if a, ok := r.(*AsyncResult); ok {
			m := a.cached()
			if m == nil {
				return nil, fmt.Errorf("result: backend returned without the result of %s", a.id)
			}
			v, err := metaValue(m, cfg.propagate)
			if err != nil {
				return nil, err
			}
			out[i] = v
			continue
		}
		v, err := memberGet(ctx, r, cfg, true)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

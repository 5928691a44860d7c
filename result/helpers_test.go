package result_test

import (
	"context"
	"testing"
	"time"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
)

// newRedisBackend connects to the test Redis server; it fails (never
// skips) when the server is unreachable.
func newRedisBackend(t testing.TB) *redisbackend.Backend {
	t.Helper()
	return redisbackend.New(testenv.Redis(t), redisbackend.Options{Expires: 10 * time.Minute})
}

func success(id string, v any) *result.Meta {
	now := time.Now()
	return &result.Meta{TaskID: id, Status: result.Success, Result: v, DateDone: &now}
}

func failure(id string, exc *protocol.Exception) *result.Meta {
	now := time.Now()
	return &result.Meta{TaskID: id, Status: result.Failure, Result: exc, Traceback: "Traceback (most recent call last):\n", DateDone: &now}
}

// pollOnly hides every capability of a backend but result.Backend, so
// results on it are waited for by polling.
type pollOnly struct{ result.Backend }

// store writes metas to b and deletes them when the test ends.
func store(t testing.TB, b *redisbackend.Backend, metas ...*result.Meta) {
	t.Helper()
	ctx := context.Background()
	for _, m := range metas {
		id := m.TaskID
		t.Cleanup(func() { _ = b.Forget(context.Background(), id) })
		if err := b.Store(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
}

// forgetLater deletes the results of ids when the test ends.
func forgetLater(t testing.TB, b result.Backend, ids ...string) {
	t.Cleanup(func() {
		for _, id := range ids {
			_ = b.Forget(context.Background(), id)
		}
	})
}

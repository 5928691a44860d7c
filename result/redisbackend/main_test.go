package redisbackend_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type bundle struct {
	client *redis.Client
	b      *redisbackend.Backend
}

func setup(t testing.TB, opts redisbackend.Options) *bundle {
	t.Helper()
	c := testenv.Redis(t)
	return &bundle{client: c, b: redisbackend.New(c, opts)}
}

// cleanup deletes keys when the test ends.
func (bd *bundle) cleanup(t testing.TB, keys ...string) {
	testenv.CleanupKeys(t, bd.client, keys...)
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func success(id string, v any) *result.Meta {
	now := time.Now()
	return &result.Meta{TaskID: id, Status: result.Success, Result: v, DateDone: &now}
}

func failure(id string, exc *protocol.Exception) *result.Meta {
	now := time.Now()
	return &result.Meta{TaskID: id, Status: result.Failure, Result: exc, Traceback: "Traceback (most recent call last):\n", DateDone: &now}
}

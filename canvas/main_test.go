package canvas_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/result/redisbackend"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// chordBackend is the real Redis backend, with each chord size write also
// logged in the recorder so tests can check its place among publishes.
type chordBackend struct {
	*redisbackend.Backend
	rec *recorder
}

func (c chordBackend) SetChordSize(ctx context.Context, groupID string, size int) error {
	c.rec.add(event{kind: "chord-size", group: groupID, size: size})
	return c.Backend.SetChordSize(ctx, groupID, size)
}

// redisChordBackend returns a chord backend on the test Redis whose keys
// use a prefix unique to the test, and the client to inspect them.
func redisChordBackend(t *testing.T, rec *recorder) (chordBackend, *redis.Client, string) {
	t.Helper()
	c := testenv.Redis(t)
	prefix := "gworker-canvas-test-" + testenv.Suffix() + "-celery-taskset-meta-"
	t.Cleanup(func() {
		keys, _ := c.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			c.Del(context.Background(), keys...)
		}
	})
	b := redisbackend.New(c, redisbackend.Options{GroupKeyPrefix: prefix, KeyPrefix: prefix + "task-"})
	return chordBackend{Backend: b, rec: rec}, c, prefix
}

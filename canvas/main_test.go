package canvas_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/gworker/gworker/result/redisbackend"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// redisAddr is the Redis server the chord tests use; it must be up.
const redisAddr = "127.0.0.1:6379"

func suffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
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

// redisChordBackend returns a chord backend on the local Redis whose keys
// use a prefix unique to the test, and the client to inspect them.
func redisChordBackend(t *testing.T, rec *recorder) (chordBackend, *redis.Client, string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: redisAddr})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		t.Fatalf("Redis at %s is required for this test and is unreachable: %v", redisAddr, err)
	}
	t.Cleanup(func() { c.Close() })
	prefix := "gworker-canvas-test-" + suffix() + "-celery-taskset-meta-"
	t.Cleanup(func() {
		keys, _ := c.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			c.Del(context.Background(), keys...)
		}
	})
	b := redisbackend.New(c, redisbackend.Options{GroupKeyPrefix: prefix, KeyPrefix: prefix + "task-"})
	return chordBackend{Backend: b, rec: rec}, c, prefix
}

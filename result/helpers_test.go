package result_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
)

// newID returns a random uuid4 string.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func vector(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// redisAddr is the Redis server the tests and examples use.
const redisAddr = "127.0.0.1:6379"

// newRedisBackend connects to the test Redis server; it fails (never
// skips) when the server is unreachable.
func newRedisBackend(t testing.TB) *redisbackend.Backend {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: redisAddr})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		t.Fatalf("Redis at %s is required for this test and is unreachable: %v", redisAddr, err)
	}
	t.Cleanup(func() { c.Close() })
	return redisbackend.New(c, redisbackend.Options{Expires: 10 * time.Minute})
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

package redisbackend_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// redisAddr is the Redis server the tests use; it must be up.
const redisAddr = "127.0.0.1:6379"

type bundle struct {
	client *redis.Client
	b      *redisbackend.Backend
}

func setup(t testing.TB, opts redisbackend.Options) *bundle {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: redisAddr})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		t.Fatalf("Redis at %s is required for this test and is unreachable: %v", redisAddr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &bundle{client: c, b: redisbackend.New(c, opts)}
}

// cleanup deletes keys when the test ends.
func (bd *bundle) cleanup(t testing.TB, keys ...string) {
	t.Cleanup(func() { bd.client.Del(context.Background(), keys...) })
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func vector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
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

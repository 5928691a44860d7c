package redisbackend_test

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
)

// When the subscription connection drops while a result is published, the
// wait reconnects, reads the stored values again and still returns.
func TestWaitReadySurvivesDroppedSubscription(t *testing.T) {
	name := "gworker-test-" + testenv.UUID()
	opts := testenv.RedisOptions(t)
	opts.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		return cn.ClientSetName(ctx, name).Err()
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() }) // after CleanupKeys below
	ctx := testCtx(t)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s is required for this test and is unreachable: %v", opts.Addr, err)
	}
	b := redisbackend.New(c, redisbackend.Options{})
	id := testenv.UUID()
	key := b.TaskKey(id)
	testenv.CleanupKeys(t, c, key)

	done := make(chan error, 1)
	go func() {
		done <- b.WaitReady(ctx, []string{id}, func(*result.Meta) {})
	}()
	for c.PubSubNumSub(ctx, key).Val()[key] == 0 {
		if err := ctx.Err(); err != nil {
			t.Fatal("never subscribed")
		}
	}
	// Kill only this test's subscriber connection, then store at once.
	killed := 0
	for _, line := range strings.Split(c.ClientList(ctx).Val(), "\n") {
		if !strings.Contains(line, " name="+name+" ") || strings.Contains(line, " sub=0 ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if id, ok := strings.CutPrefix(f, "id="); ok {
				if err := c.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
					t.Fatal(err)
				}
				killed++
			}
		}
	}
	if killed != 1 {
		t.Fatalf("killed %d subscriber connections, want 1", killed)
	}
	if err := b.Store(ctx, success(id, "after reconnect")); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

package redistransport

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"
)

// restartPort is the private Redis of TestRedisRestart.
const restartPort = 6436

// TestRedisRestart kills the Redis server (with an fsync-always append-only
// file) in the middle of a drain and starts it again: the consumer and the
// acknowledgements reconnect with backoff and every message is delivered.
func TestRedisRestart(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--port", fmt.Sprint(restartPort), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "yes", "--appendfsync", "always", "--dir", dir}
	srv := startRedis(t, "redis-server", args...)
	ctx := ctxT(t)
	addr := fmt.Sprintf("127.0.0.1:%d", restartPort)
	pc := redis.NewClient(&redis.Options{Addr: addr})
	defer pc.Close()
	waitFor(t, "private redis-server", 30*time.Second, func() bool { return pc.Ping(ctx).Err() == nil })

	b, err := Dial(ctx, Config{
		URL: "redis://" + addr + "/0", Logger: zaptest.NewLogger(t),
		VisibilityTimeout: 3 * time.Second, RestoreInterval: 500 * time.Millisecond, ReconnectMax: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const n = 200
	for i := range n {
		if err := b.Publish(ctx, "", "celery", task(fmt.Sprint(i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := b.NewConsumer(ctx, ConsumerConfig{Queues: []string{"celery"}, Prefetch: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seen := map[string]int{}
	restarted := false
	deadline := time.After(120 * time.Second)
	for len(seen) < n {
		select {
		case d := <-c.Deliveries():
			seen[d.Raw().Headers["id"].(string)]++
			if err := d.Ack(); err != nil {
				t.Logf("ack across the restart: %v", err)
			}
			if len(seen) == n/4 && !restarted {
				restarted = true
				_ = srv.Process.Kill()
				_ = srv.Wait()
				startRedis(t, "redis-server", args...)
				t.Log("redis-server restarted")
			}
		case <-deadline:
			t.Fatalf("%d of %d messages delivered after the restart", len(seen), n)
		}
	}
	dups := 0
	for _, k := range seen {
		dups += k - 1
	}
	t.Logf("all %d delivered, %d twice", n, dups)
}

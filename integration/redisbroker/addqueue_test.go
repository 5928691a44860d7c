package redisbroker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/redistransport"
	"github.com/gworker/gworker/worker"
)

// countingBroker counts the consumers a worker starts.
type countingBroker struct {
	*redistransport.Broker
	mu       sync.Mutex
	consumes int
}

func (b *countingBroker) Consume(ctx context.Context, queues []string, prefetch int) (worker.Consumer, error) {
	b.mu.Lock()
	b.consumes++
	b.mu.Unlock()
	return b.Broker.Consume(ctx, queues, prefetch)
}

// 80 queues added at run time (add_consumer) on a Redis broker are taken
// by the worker's one fetch loop: they hold none of the pool's 10
// connections, every task on them runs, and the broker keeps answering.
// Each added queue used to start a BRPOP loop of its own: after 40, ping
// took 3 s; after 80, nothing answered.
func TestAddedQueuesShareTheFetchLoop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	prefix := "gwt-" + testenv.Suffix() + ":"
	rb, err := redistransport.Dial(ctx, redistransport.Config{URL: testenv.RedisURL(), Logger: zaptest.NewLogger(t),
		GlobalKeyPrefix: prefix, MaxConnections: 10})
	if err != nil {
		t.Fatal(err)
	}
	rc := testenv.Redis(t)
	t.Cleanup(func() {
		_ = rb.Close()
		if keys, _ := rc.Keys(context.Background(), prefix+"*").Result(); len(keys) > 0 {
			rc.Del(context.Background(), keys...)
		}
	})
	ran := make(chan string, 100)
	reg := worker.NewRegistry()
	reg.MustRegister("t.mark", func(id string) { ran <- id })
	b := &countingBroker{Broker: rb}
	w, err := worker.New(worker.Config{Registry: reg, Broker: b, Queues: []string{"startup"}, Concurrency: 4,
		DisableFollowups: true})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-w.Ready():
	case <-ctx.Done():
		t.Fatal("the worker did not start")
	}
	const n = 80
	for i := range n {
		if err := w.Controls().AddQueue(ctx, fmt.Sprint("added", i)); err != nil {
			t.Fatal(err)
		}
	}
	b.mu.Lock()
	consumes := b.consumes
	b.mu.Unlock()
	if consumes != 1 {
		t.Fatalf("%d consumers started for %d queues: each added queue holds a connection", consumes, n+1)
	}
	for i := range n {
		msg := &protocol.RawMessage{Headers: map[string]any{"id": fmt.Sprint("task-", i), "task": "t.mark", "lang": "py"},
			ContentType: "application/json", ContentEncoding: "utf-8",
			Body: []byte(fmt.Sprintf(`[["q%d"], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`, i))}
		if err := rb.Publish(ctx, "", fmt.Sprint("added", i), msg); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		select {
		case <-ran:
		case <-ctx.Done():
			t.Fatalf("%d of %d tasks ran", i, n)
		}
	}
	if _, err := rb.QueueLength(ctx, "startup"); err != nil {
		t.Fatal(err)
	}
	st := rb.Client().PoolStats()
	t.Logf("pool: %d connections, %d idle, %d waits timed out", st.TotalConns, st.IdleConns, st.Timeouts)
	if st.Timeouts != 0 || st.TotalConns >= 10 {
		t.Fatalf("pool %+v: the added queues hold connections", st)
	}
}

package rabbitmq_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/internal/testing/rmqnode"
	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
	"github.com/gworker/gworker/worker"
)

// finalCounter counts the final states stored per task id.
type finalCounter struct {
	*redisbackend.Backend
	stores atomic.Int64
}

func (b *finalCounter) Store(ctx context.Context, m *result.Meta) error {
	if m.Status.Ready() {
		b.stores.Add(1)
	}
	return b.Backend.Store(ctx, m)
}

// startNode starts a private RabbitMQ node and stops it when t ends.
func startNode(t *testing.T, cfg rmqnode.Config) *rmqnode.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	n, err := rmqnode.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Remove(context.Background()); err != nil {
			t.Errorf("stop private node: %v", err)
		}
	})
	return n
}

// An acks_late task running longer than the broker's consumer_timeout runs
// once: the channel the broker closes is reopened, the redelivered copy is
// not started again but settled with the run's outcome, and one result is
// stored.
func TestConsumerTimeoutRunsOnce(t *testing.T) {
	node := startNode(t, rmqnode.Config{Name: "gwtimeout", Port: 5680, DistPort: 25680,
		ConsumerTimeout: 2 * time.Second, TickInterval: 500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := amqptransport.Dial(ctx, amqptransport.Config{URL: node.URL(),
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rb, err := redisbackend.Open(testenv.RedisURL(), redisbackend.Options{Expires: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	backend := &finalCounter{Backend: rb}

	var runs atomic.Int64
	release := make(chan struct{})
	reg := worker.NewRegistry()
	if err := reg.Register("timeout.slow", func(ctx context.Context) (int, error) {
		runs.Add(1)
		<-release
		return 42, nil
	}); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	queue := "timeout-" + testenv.Suffix()
	w, err := worker.New(worker.Config{Registry: reg, Broker: b, Backend: backend,
		Queues: []string{queue}, Concurrency: 2, AcksLate: true, DisableFollowups: true, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.DeclareTaskQueue(ctx, queue); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// Registered after the deferred stop, so it runs first: a failing test
	// must not leave tasks blocked and the shutdown waiting for them.
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	defer unblock()

	p := producer.New(b, producer.Options{Backend: rb, DefaultQueue: queue})
	r, err := p.SendTask(ctx, "timeout.slow", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Forget(context.Background())

	// Wait until the broker has timed the delivery out twice and the
	// worker parked the redelivered copies.
	parked := func() int {
		return logs.FilterField(zap.String("reason", "duplicate-running")).Len()
	}
	for parked() < 2 {
		select {
		case err := <-done:
			t.Fatalf("worker stopped: %v", err)
		case <-ctx.Done():
			t.Fatalf("the broker's consumer_timeout did not redeliver the running task twice (parked copies: %d)", parked())
		case <-time.After(100 * time.Millisecond):
		}
	}
	unblock()
	v, err := r.Get(ctx, result.WithTimeout(30*time.Second))
	if err != nil || v != int64(42) {
		t.Fatalf("result %v, %v; want 42", v, err)
	}
	// Every copy is settled: the queue drains.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := node.Ctl(ctx, "list_queues", "-q", "name", "messages_ready", "messages_unacknowledged")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(out), queue+"\t0\t0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue not drained:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("the task ran %d times, want once", n)
	}
	if n := backend.stores.Load(); n != 1 {
		t.Errorf("%d final results stored, want 1", n)
	}
	select {
	case err := <-done:
		t.Fatalf("worker stopped: %v", err)
	default:
	}
}

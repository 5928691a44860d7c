package worker_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/demo"
	"github.com/gworker/gworker/internal/amqpworker"
	"github.com/gworker/gworker/internal/testenv"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
	"github.com/gworker/gworker/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is one worker on a queue of its own, against the real RabbitMQ and
// Redis, with a producer to send it tasks.
type env struct {
	t        *testing.T
	queue    string
	broker   *amqptransport.Broker
	backend  *redisbackend.Backend
	producer *producer.Producer
	worker   *worker.Worker
	logs     *observer.ObservedLogs
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

type envOption func(*worker.Config, *worker.Registry)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := amqptransport.Dial(ctx, amqptransport.Config{URL: testenv.AMQPURL(), ConnectionName: "gworker-worker-test"})
	if err != nil {
		t.Fatalf("RabbitMQ must run at %s for these tests (.ci/run starts it): %v", testenv.AMQPURL(), err)
	}
	rb, err := redisbackend.Open(testenv.RedisURL(), redisbackend.Options{Expires: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := rb.Client().Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis must run at %s for these tests (.ci/run starts it): %v", testenv.RedisURL(), err)
	}
	e := &env{t: t, queue: "gw-worker-test-" + testenv.Suffix(), broker: b, backend: rb, done: make(chan error, 1)}
	core, logs := observer.New(zap.DebugLevel)
	e.logs = logs
	log := zap.New(core)
	e.producer = producer.New(b, producer.Options{Backend: rb, DefaultQueue: e.queue, Logger: log})
	reg := worker.NewRegistry()
	if err := demo.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := worker.RegisterBuiltins(reg, e.producer, rb, log); err != nil {
		t.Fatal(err)
	}
	if err := demo.RegisterClientTasks(reg, e.producer, rb); err != nil {
		t.Fatal(err)
	}
	cfg := worker.Config{
		Registry:    reg,
		Broker:      amqpworker.New(b),
		Backend:     rb,
		Followups:   worker.NewFollowups(e.producer, rb, log),
		Queues:      []string{e.queue},
		Concurrency: 4,
		Hostname:    "celery@test",
		Logger:      log,
	}
	for _, o := range opts {
		o(&cfg, reg)
	}
	w, err := worker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.worker = w
	// Declare the queue before the worker starts, so that messages sent
	// before it consumes are kept.
	if err := b.Declare(ctx, amqptransport.TaskQueue(e.queue)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.close)
	return e
}

func (e *env) start() {
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.done <- e.worker.Run(ctx) }()
}

// stop shuts the worker down warmly and waits for Run to return.
func (e *env) stop() {
	e.stopOnce.Do(func() {
		if e.cancel == nil {
			return
		}
		e.cancel()
		select {
		case err := <-e.done:
			if err != nil {
				e.t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			e.t.Error("worker did not stop within 30 s")
		}
	})
}

func (e *env) close() {
	e.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = e.broker.DeleteQueue(ctx, e.queue)
	_ = e.broker.Close()
	_ = e.backend.Close()
	if e.t.Failed() {
		for _, l := range e.logs.All() {
			e.t.Logf("worker log: %s %s %v", l.Level, l.Message, l.ContextMap())
		}
	}
}

func (e *env) send(name string, args []any, kwargs map[string]any, opts ...producer.Option) *result.AsyncResult {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := e.producer.SendTask(ctx, name, args, kwargs, opts...)
	if err != nil {
		e.t.Fatalf("send %s: %v", name, err)
	}
	e.t.Cleanup(func() { _ = r.Forget(context.Background()) })
	return r
}

func (e *env) get(r *result.AsyncResult, opts ...result.GetOption) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return r.Get(ctx, append([]result.GetOption{result.WithTimeout(15 * time.Second)}, opts...)...)
}

func (e *env) meta(id string) *result.Meta {
	e.t.Helper()
	m, err := e.backend.Get(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) logged(sub string) bool {
	for _, l := range e.logs.All() {
		if strings.Contains(l.Message, sub) {
			return true
		}
	}
	return false
}

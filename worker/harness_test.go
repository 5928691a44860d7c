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

	"github.com/gworker/gworker/demo"
	"github.com/gworker/gworker/gworkertest"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is one worker on the in-memory broker and result backend of
// gworkertest, with a producer to send it tasks. Nothing touches the
// network.
type env struct {
	t        *testing.T
	queue    string
	g        *gworkertest.Env
	broker   *gworkertest.Broker
	backend  *gworkertest.Backend
	producer *producer.Producer
	worker   *worker.Worker
	logs     *observer.ObservedLogs
	stopOnce sync.Once
}

type envOption func(*worker.Config, *worker.Registry)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	log := zap.New(core)
	// Registered first, so that it runs last: after the Env has stopped.
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range logs.All() {
				t.Logf("worker log: %s %s %v", l.Level, l.Message, l.ContextMap())
			}
		}
	})
	reg := worker.NewRegistry()
	cfg := worker.Config{Concurrency: 4, Hostname: "celery@test"}
	for _, o := range opts {
		o(&cfg, reg)
	}
	queue := "gw-worker-test"
	g := gworkertest.NewEnv(t, gworkertest.Config{Registry: reg, Queue: queue, Worker: cfg, Logger: log})
	if err := demo.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := demo.RegisterClientTasks(reg, demo.Static(g.Producer, g.Backend)); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, queue: queue, g: g, broker: g.Broker, backend: g.Backend, producer: g.Producer, logs: logs}
}

func (e *env) start() {
	e.t.Helper()
	if err := e.g.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.worker = e.g.Worker()
}

// stop shuts the worker down warmly and waits for Run to return.
func (e *env) stop() {
	e.stopOnce.Do(func() {
		if e.worker == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.g.Stop(ctx); err != nil {
			e.t.Errorf("stop: %v", err)
		}
	})
}

func (e *env) send(name string, args []any, kwargs map[string]any, opts ...producer.Option) *result.AsyncResult {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := e.producer.SendTask(ctx, name, args, kwargs, opts...)
	if err != nil {
		e.t.Fatalf("send %s: %v", name, err)
	}
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

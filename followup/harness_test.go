package followup_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gworker/gworker/demo"
	"github.com/gworker/gworker/gworkertest"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is one worker on the in-memory broker and result backend of
// gworkertest, whose Followups are NewFollowups and whose registry holds
// the builtins, with a producer to send it tasks. Nothing touches the
// network.
type env struct {
	t        *testing.T
	queue    string
	g        *gworkertest.Env
	backend  *gworkertest.Backend
	producer *producer.Producer
}

func newEnv(t *testing.T) *env {
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
	queue := "gw-followup-test"
	g := gworkertest.NewEnv(t, gworkertest.Config{Registry: reg, Queue: queue,
		Worker: worker.Config{Concurrency: 4, Hostname: "celery@test"}, Logger: log})
	if err := demo.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := demo.RegisterClientTasks(reg, demo.Static(g.Producer, g.Backend)); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, queue: queue, g: g, backend: g.Backend, producer: g.Producer}
}

func (e *env) start() {
	e.t.Helper()
	if err := e.g.Start(context.Background()); err != nil {
		e.t.Fatal(err)
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

func wantException(t *testing.T, err error, typ string) *protocol.Exception {
	t.Helper()
	var exc *protocol.Exception
	if !errors.As(err, &exc) {
		t.Fatalf("want %s, got %v", typ, err)
	}
	if exc.Type != typ {
		t.Fatalf("want %s, got %s(%v)", typ, exc.Type, exc.Args)
	}
	return exc
}

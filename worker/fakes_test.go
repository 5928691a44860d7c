package worker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// Minimal in-memory broker and backend for regression tests that need to
// see exactly what the worker acknowledged and stored, or to make an ack
// or a store fail on purpose.

type fakeDelivery struct {
	raw    *protocol.RawMessage
	ackErr error
	c      *fakeConsumer
}

func (d *fakeDelivery) Raw() *protocol.RawMessage { return d.raw }

func (d *fakeDelivery) Ack() error {
	d.c.record(d, "ack")
	return d.ackErr
}

func (d *fakeDelivery) Reject(requeue bool) error {
	if requeue {
		d.c.record(d, "requeue")
	} else {
		d.c.record(d, "reject")
	}
	return nil
}

type fakeConsumer struct {
	ch       chan worker.Delivery
	mu       sync.Mutex
	settled  map[*fakeDelivery][]string
	prefetch []int
	events   chan string
	once     sync.Once
}

func (c *fakeConsumer) record(d *fakeDelivery, what string) {
	c.mu.Lock()
	c.settled[d] = append(c.settled[d], what)
	c.mu.Unlock()
	c.events <- what
}

func (c *fakeConsumer) Deliveries() <-chan worker.Delivery { return c.ch }
func (c *fakeConsumer) SetPrefetch(n int) error {
	c.mu.Lock()
	c.prefetch = append(c.prefetch, n)
	c.mu.Unlock()
	return nil
}
func (c *fakeConsumer) Cancel(context.Context) error { c.close(); return nil }
func (c *fakeConsumer) Close() error                 { c.close(); return nil }
func (c *fakeConsumer) close()                       { c.once.Do(func() { close(c.ch) }) }

func (c *fakeConsumer) outcome(d *fakeDelivery) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.settled[d]...)
}

type fakeBroker struct{ c *fakeConsumer }

func newFakeBroker() *fakeBroker {
	return &fakeBroker{c: &fakeConsumer{ch: make(chan worker.Delivery, 1000),
		settled: map[*fakeDelivery][]string{}, events: make(chan string, 1000)}}
}

func (b *fakeBroker) Consume(context.Context, []string, int) (worker.Consumer, error) {
	return b.c, nil
}

// deliver hands raw to the worker; ackErr is what its Ack returns.
func (b *fakeBroker) deliver(raw *protocol.RawMessage, ackErr error) *fakeDelivery {
	d := &fakeDelivery{raw: raw, ackErr: ackErr, c: b.c}
	b.c.ch <- d
	return d
}

// waitSettled waits for n acks/rejects in all.
func (b *fakeBroker) waitSettled(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-b.c.events:
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d of %d deliveries settled", i, n)
		}
	}
}

type fakeBackend struct {
	mu     sync.Mutex
	stored map[string][]*result.Meta
	fail   error // returned by Store while set
	calls  chan string
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{stored: map[string][]*result.Meta{}, calls: make(chan string, 1000)}
}

func (b *fakeBackend) Store(_ context.Context, m *result.Meta) error {
	b.mu.Lock()
	err := b.fail
	if err == nil {
		b.stored[m.TaskID] = append(b.stored[m.TaskID], m)
	}
	b.mu.Unlock()
	select {
	case b.calls <- m.TaskID:
	default:
	}
	return err
}

func (b *fakeBackend) setFail(err error) {
	b.mu.Lock()
	b.fail = err
	b.mu.Unlock()
}

func (b *fakeBackend) Get(_ context.Context, id string) (*result.Meta, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ms := b.stored[id]; len(ms) > 0 {
		return ms[len(ms)-1], nil
	}
	return &result.Meta{TaskID: id, Status: result.Pending}, nil
}

func (b *fakeBackend) Forget(_ context.Context, id string) error {
	b.mu.Lock()
	delete(b.stored, id)
	b.mu.Unlock()
	return nil
}

func (b *fakeBackend) keys() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for k := range b.stored {
		out = append(out, k)
	}
	return out
}

// fakeEnv is a worker over a fakeBroker and a fakeBackend.
type fakeEnv struct {
	broker  *fakeBroker
	backend *fakeBackend
	worker  *worker.Worker
	logs    *observer.ObservedLogs
	done    chan error
	cancel  context.CancelFunc
}

func newFakeEnv(t *testing.T, reg *worker.Registry, tweak func(*worker.Config)) *fakeEnv {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	e := &fakeEnv{broker: newFakeBroker(), backend: newFakeBackend(), logs: logs, done: make(chan error, 1)}
	cfg := worker.Config{Registry: reg, Broker: e.broker, Backend: e.backend, Queues: []string{"q"},
		Concurrency: 2, Hostname: "celery@fake", DisableFollowups: true, Logger: zap.New(core)}
	if tweak != nil {
		tweak(&cfg)
	}
	w, err := worker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.worker = w
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-e.done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("worker did not stop within 30 s")
		}
	})
	return e
}

// taskRaw is a valid protocol 2 JSON message for task with id.
func taskRaw(t *testing.T, task, id string, args ...any) *protocol.RawMessage {
	t.Helper()
	if args == nil {
		args = []any{}
	}
	raw, err := protocol.Encode(&protocol.Message{ID: id, Task: task, Args: args, Kwargs: map[string]any{}}, protocol.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

package worker

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// Helpers of the tests of the worker's parts, each tested on its own.

// memBackend records the metas stored; fail, when set, decides the error
// of each Store.
type memBackend struct {
	mu     sync.Mutex
	stored []*result.Meta
	calls  int
	fail   func(call int) error
}

func (b *memBackend) Store(_ context.Context, m *result.Meta) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	if b.fail != nil {
		if err := b.fail(b.calls); err != nil {
			return err
		}
	}
	b.stored = append(b.stored, m)
	return nil
}

func (b *memBackend) Get(context.Context, string) (*result.Meta, error) { return nil, nil }
func (b *memBackend) Forget(context.Context, string) error              { return nil }

func (b *memBackend) metas() []*result.Meta {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*result.Meta(nil), b.stored...)
}

// states returns the states stored for id, in order.
func (b *memBackend) states(id string) []result.State {
	var out []result.State
	for _, m := range b.metas() {
		if m.TaskID == id {
			out = append(out, m.Status)
		}
	}
	return out
}

// testDelivery records how it was settled.
type testDelivery struct {
	raw    *protocol.RawMessage
	ackErr error
	stale  bool
	// count, when counted, is the broker's count of earlier deliveries.
	count   int
	counted bool

	mu      sync.Mutex
	settled []string // "ack", "requeue", "reject"
}

func (d *testDelivery) Raw() *protocol.RawMessage  { return d.raw }
func (d *testDelivery) Ack() error                 { d.record("ack"); return d.ackErr }
func (d *testDelivery) Stale() bool                { return d.stale }
func (d *testDelivery) DeliveryCount() (int, bool) { return d.count, d.counted }
func (d *testDelivery) Reject(requeue bool) error {
	if requeue {
		d.record("requeue")
	} else {
		d.record("reject")
	}
	return nil
}

func (d *testDelivery) record(s string) {
	d.mu.Lock()
	d.settled = append(d.settled, s)
	d.mu.Unlock()
}

func (d *testDelivery) outcome() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.settled...)
}

// testConsumer records the prefetch windows asked of it, and whether it
// was cancelled and closed.
type testConsumer struct {
	mu       sync.Mutex
	prefetch []int
	cancels  int
	closes   int
	ch       chan Delivery
	once     sync.Once
}

func newTestConsumer() *testConsumer { return &testConsumer{ch: make(chan Delivery, 100)} }

func (c *testConsumer) Deliveries() <-chan Delivery { return c.ch }
func (c *testConsumer) SetPrefetch(n int) error {
	c.mu.Lock()
	c.prefetch = append(c.prefetch, n)
	c.mu.Unlock()
	return nil
}
func (c *testConsumer) Cancel(context.Context) error {
	c.mu.Lock()
	c.cancels++
	c.mu.Unlock()
	c.once.Do(func() { close(c.ch) })
	return nil
}
func (c *testConsumer) Close() error {
	c.mu.Lock()
	c.closes++
	c.mu.Unlock()
	c.once.Do(func() { close(c.ch) })
	return nil
}

// ended returns how often the consumer was cancelled and closed.
func (c *testConsumer) ended() (cancels, closes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cancels, c.closes
}

func (c *testConsumer) windows() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.prefetch...)
}

// testJob is a received job with id of a task named name, run by h (nil:
// one returning nil), on a testDelivery.
func testJob(t *testing.T, name, id string, h Handler, opts TaskOptions) *job {
	t.Helper()
	if h == nil {
		h = func(context.Context, []any, map[string]any) (any, error) { return nil, nil }
	}
	msg := &protocol.Message{ID: id, Task: name, Args: []any{}, Kwargs: map[string]any{}}
	raw, err := protocol.Encode(msg, protocol.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &job{d: &testDelivery{raw: raw}, msg: msg, task: &Task{Name: name, Handler: h, Options: opts}, received: time.Now()}
}

func (j *job) delivery() *testDelivery { return j.d.(*testDelivery) }

// observed returns a logger whose lines the test can read.
func observed() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zap.DebugLevel)
	return zap.New(core), logs
}

// recv waits for a value on ch.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s within 30 s", what)
		panic("unreachable")
	}
}

// waitUntil polls cond until it holds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30 s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

package worker

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"go.uber.org/zap"

	"github.com/gworker/gworker/transport"
)

// testBroker hands out a testConsumer per Consume and records the calls.
type testBroker struct {
	mu        sync.Mutex
	consumers map[string]*testConsumer // by first queue
	prefetch  map[string]int
	err       error
}

func newTestBroker() *testBroker {
	return &testBroker{consumers: map[string]*testConsumer{}, prefetch: map[string]int{}}
}

func (b *testBroker) Consume(_ context.Context, queues []string, prefetch int) (Consumer, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return nil, b.err
	}
	c := newTestConsumer()
	b.consumers[queues[0]] = c
	b.prefetch[queues[0]] = prefetch
	return c, nil
}

func (b *testBroker) consumer(queue string) *testConsumer {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.consumers[queue]
}

// testConsumers are consumers over a testBroker whose dispatch loops
// report each delivery.
func testConsumers(b *testBroker) (*consumers, chan Delivery) {
	got := make(chan Delivery, 10)
	return newConsumers(b, zap.NewNop(), []string{"startup"}, func(ds <-chan Delivery) {
		for d := range ds {
			got <- d
		}
	}), got
}

func TestConsumersAddAndCancelQueues(t *testing.T) {
	b := newTestBroker()
	c, got := testConsumers(b)
	ctx := context.Background()
	if err := c.add(ctx, "extra", 8); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("add before start: %v", err)
	}
	c.start(newTestConsumer())
	if err := c.add(ctx, "extra", 8); err != nil {
		t.Fatal(err)
	}
	if err := c.add(ctx, "extra", 8); err != nil {
		t.Fatalf("adding a consumed queue again: %v", err)
	}
	if got := c.list(); !reflect.DeepEqual(got, []string{"startup", "extra"}) {
		t.Errorf("queues %v", got)
	}
	extra := b.consumer("extra")
	if b.prefetch["extra"] != 8 {
		t.Errorf("prefetch %d", b.prefetch["extra"])
	}
	d := &testDelivery{}
	extra.ch <- d
	if recv(t, got, "delivery") != d {
		t.Fatal("the added queue's delivery was not dispatched")
	}

	if err := c.cancel(ctx, "startup"); !errors.Is(err, ErrStartupQueue) {
		t.Errorf("cancel a start-up queue: %v", err)
	}
	if err := c.cancel(ctx, "unknown"); !errors.Is(err, ErrNotConsuming) {
		t.Errorf("cancel an unknown queue: %v", err)
	}
	if err := c.cancel(ctx, "extra"); err != nil {
		t.Fatal(err)
	}
	if got := c.list(); !reflect.DeepEqual(got, []string{"startup"}) {
		t.Errorf("queues after cancel %v", got)
	}
	if cancels, closes := extra.ended(); cancels != 1 || closes != 0 {
		t.Errorf("cancelled %d, closed %d; want it cancelled, closed only at the end", cancels, closes)
	}
	c.cancelAdded(ctx)
	c.closeAdded()
	if _, closes := extra.ended(); closes != 1 {
		t.Errorf("closed %d times at the end", closes)
	}
}

func TestConsumersStop(t *testing.T) {
	b := newTestBroker()
	c, _ := testConsumers(b)
	ctx := context.Background()
	c.start(newTestConsumer())
	if err := c.add(ctx, "a", 1); err != nil {
		t.Fatal(err)
	}
	c.stop()
	if err := c.add(ctx, "b", 1); !errors.Is(err, ErrNotRunning) {
		t.Errorf("add after stop: %v", err)
	}
	// cancelAdded returns once the dispatch loops ended.
	c.cancelAdded(ctx)
	c.closeAdded()
	if cancels, closes := b.consumer("a").ended(); cancels != 1 || closes != 1 {
		t.Errorf("cancelled %d, closed %d", cancels, closes)
	}
	if got := c.list(); !reflect.DeepEqual(got, []string{"startup", "a"}) {
		t.Errorf("queues %v", got)
	}
}

func TestConsumersReportAFailedConsume(t *testing.T) {
	b := newTestBroker()
	b.err = errors.New("access refused")
	c, _ := testConsumers(b)
	c.start(newTestConsumer())
	if err := c.add(context.Background(), "x", 1); !errors.Is(err, b.err) {
		t.Fatalf("err %v", err)
	}
	if got := c.list(); !reflect.DeepEqual(got, []string{"startup"}) {
		t.Errorf("queues %v", got)
	}
}

// adderConsumer is a testConsumer that takes added queues itself.
type adderConsumer struct {
	*testConsumer
	mu     sync.Mutex
	queues []string
	// apart names the queues AddQueue refuses with
	// transport.ErrSeparateConsumer.
	apart map[string]bool
}

func (c *adderConsumer) AddQueue(_ context.Context, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apart[name] {
		return fmt.Errorf("refused: %w", transport.ErrSeparateConsumer)
	}
	c.queues = append(c.queues, name)
	return nil
}

func (c *adderConsumer) CancelQueue(_ context.Context, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, q := range c.queues {
		if q == name {
			c.queues = append(c.queues[:i:i], c.queues[i+1:]...)
			return nil
		}
	}
	return transport.ErrNotConsuming
}

func (c *adderConsumer) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.queues...)
}

// TestConsumersAddToTheMainConsumer: when the main consumer takes added
// queues itself, add and cancel go to it and no consumer is started; the
// number of added queues is bounded.
func TestConsumersAddToTheMainConsumer(t *testing.T) {
	b := newTestBroker()
	c, _ := testConsumers(b)
	ctx := context.Background()
	main := &adderConsumer{testConsumer: newTestConsumer()}
	c.start(main)
	if err := c.add(ctx, "extra", 8); err != nil {
		t.Fatal(err)
	}
	if err := c.add(ctx, "extra", 8); err != nil {
		t.Fatal(err)
	}
	if got := main.list(); !reflect.DeepEqual(got, []string{"extra"}) {
		t.Fatalf("main consumer takes %v", got)
	}
	if b.consumer("extra") != nil {
		t.Fatal("a consumer was started for the added queue")
	}
	if got := c.list(); !reflect.DeepEqual(got, []string{"startup", "extra"}) {
		t.Errorf("queues %v", got)
	}
	if err := c.cancel(ctx, "extra"); err != nil {
		t.Fatal(err)
	}
	if got := main.list(); len(got) != 0 {
		t.Fatalf("main consumer still takes %v", got)
	}
	if err := c.cancel(ctx, "extra"); !errors.Is(err, ErrNotConsuming) {
		t.Errorf("cancel it again: %v", err)
	}
	for i := range MaxAddedQueues {
		if err := c.add(ctx, fmt.Sprint("q", i), 8); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.add(ctx, "one-too-many", 8); !errors.Is(err, ErrTooManyQueues) {
		t.Fatalf("add beyond the bound: %v", err)
	}
	if err := c.add(ctx, "q0", 8); err != nil {
		t.Fatalf("adding a consumed queue at the bound: %v", err)
	}
	if err := c.cancel(ctx, "q0"); err != nil {
		t.Fatal(err)
	}
	if err := c.add(ctx, "one-more", 8); err != nil {
		t.Fatalf("add after a cancel: %v", err)
	}
	c.stop()
	c.cancelAdded(ctx)
	c.closeAdded()
	if cancels, closes := main.ended(); cancels != 0 || closes != 0 {
		t.Errorf("the main consumer was cancelled %d, closed %d times: the worker ends it", cancels, closes)
	}
}

// A queue the main consumer cannot take (a quorum queue beside classic
// ones on RabbitMQ) is consumed on a consumer of its own, as every added
// queue was before the main consumer could take them.
func TestConsumersAddApartWhatTheMainConsumerRefuses(t *testing.T) {
	b := newTestBroker()
	c, got := testConsumers(b)
	ctx := context.Background()
	main := &adderConsumer{testConsumer: newTestConsumer(), apart: map[string]bool{"quorum": true}}
	c.start(main)
	if err := c.add(ctx, "quorum", 8); err != nil {
		t.Fatal(err)
	}
	if err := c.add(ctx, "classic", 8); err != nil {
		t.Fatal(err)
	}
	own := b.consumer("quorum")
	if own == nil || b.prefetch["quorum"] != 8 {
		t.Fatalf("no consumer of its own for the refused queue (prefetch %d)", b.prefetch["quorum"])
	}
	if b.consumer("classic") != nil || !reflect.DeepEqual(main.list(), []string{"classic"}) {
		t.Fatalf("the main consumer takes %v", main.list())
	}
	if got := c.list(); !reflect.DeepEqual(got, []string{"startup", "quorum", "classic"}) {
		t.Errorf("queues %v", got)
	}
	d := &testDelivery{}
	own.ch <- d
	if recv(t, got, "delivery") != d {
		t.Fatal("the refused queue's delivery was not dispatched")
	}
	if err := c.cancel(ctx, "quorum"); err != nil {
		t.Fatal(err)
	}
	if cancels, _ := own.ended(); cancels != 1 {
		t.Errorf("its consumer was cancelled %d times", cancels)
	}
	c.stop()
	c.cancelAdded(ctx)
	c.closeAdded()
}

package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.uber.org/zap"

	"github.com/gworker/gworker/transport"
)

// MaxAddedQueues bounds how many queues add_consumer may add to a running
// worker: anyone on the broker can send the command, and each added queue
// costs the broker work on every fetch.
const MaxAddedQueues = 100

// ErrTooManyQueues: MaxAddedQueues queues were already added.
var ErrTooManyQueues = errors.New("worker: too many queues added")

// consumers are the worker's consumptions of its queues: the one Run
// starts on the start-up queues, and those added and cancelled while it
// runs (Celery's add_consumer and cancel_consumer). When the main consumer
// is a transport.QueueAdder, added queues are consumed by it, sharing its
// broker connection and prefetch window, as Celery does; otherwise each
// added queue gets a consumer of its own.
type consumers struct {
	broker Broker
	log    *zap.Logger
	// dispatch hands the deliveries of an added consumer to the worker
	// until they end.
	dispatch func(deliveries <-chan Delivery)

	// change serializes add and cancel, so that a queue is added or
	// cancelled once and the bound holds.
	change sync.Mutex

	mu      sync.Mutex
	main    Consumer // of the start-up queues; nil before start
	closing bool
	queues  []string            // consumed queues, start-up ones first
	extra   map[string]Consumer // queues added at run time, each on its own consumer
	shared  map[string]bool     // queues added at run time to main
	done    []Consumer          // cancelled added consumers, closed at the end
	loops   sync.WaitGroup      // dispatch loops of added consumers
}

func newConsumers(broker Broker, log *zap.Logger, queues []string, dispatch func(<-chan Delivery)) *consumers {
	return &consumers{broker: broker, log: log, dispatch: dispatch,
		queues: append([]string(nil), queues...), extra: map[string]Consumer{}, shared: map[string]bool{}}
}

// start records the consumer of the start-up queues: queues can be added
// from now on.
func (c *consumers) start(main Consumer) {
	c.mu.Lock()
	c.main = main
	c.mu.Unlock()
}

// list returns the consumed queues.
func (c *consumers) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.queues...)
}

// has reports whether q is consumed.
func (c *consumers) has(q string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range c.queues {
		if name == q {
			return true
		}
	}
	return false
}

// add starts consuming a queue: on the main consumer, within its prefetch
// window, when it is a transport.QueueAdder that takes it, else on a
// consumer of its own with the given prefetch window. Consuming a queue already consumed
// is not an error; beyond MaxAddedQueues added queues it is
// ErrTooManyQueues.
func (c *consumers) add(ctx context.Context, name string, prefetch int) error {
	c.change.Lock()
	defer c.change.Unlock()
	c.mu.Lock()
	main := c.main
	if main == nil || c.closing {
		c.mu.Unlock()
		return ErrNotRunning
	}
	for _, q := range c.queues {
		if q == name {
			c.mu.Unlock()
			return nil
		}
	}
	if len(c.extra)+len(c.shared) >= MaxAddedQueues {
		c.mu.Unlock()
		return fmt.Errorf("%w: %d queues were added already (at most %d); cancel one first",
			ErrTooManyQueues, MaxAddedQueues, MaxAddedQueues)
	}
	c.mu.Unlock()
	if adder, ok := main.(transport.QueueAdder); ok {
		err := c.addShared(ctx, adder, name)
		if !errors.Is(err, transport.ErrSeparateConsumer) {
			return err
		}
		c.log.Warn("queue "+name+" cannot share the main consumer; consuming it on a consumer, and a prefetch window, of its own",
			zap.Error(err))
	}
	cons, err := c.broker.Consume(ctx, []string{name}, prefetch)
	if err != nil {
		return fmt.Errorf("worker: consume %q: %w", name, err)
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		_ = cons.Close()
		return ErrNotRunning
	}
	c.extra[name] = cons
	c.queues = append(c.queues, name)
	c.loops.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.loops.Done()
		c.dispatch(cons.Deliveries())
	}()
	c.log.Info("Started consuming from " + name)
	return nil
}

// addShared adds the queue to the main consumer.
func (c *consumers) addShared(ctx context.Context, adder transport.QueueAdder, name string) error {
	if err := adder.AddQueue(ctx, name); err != nil {
		return fmt.Errorf("worker: consume %q: %w", name, err)
	}
	c.mu.Lock()
	c.shared[name] = true
	c.queues = append(c.queues, name)
	c.mu.Unlock()
	c.log.Info("Started consuming from " + name)
	return nil
}

// cancel stops consuming a queue added with add. Messages already
// received still run.
func (c *consumers) cancel(ctx context.Context, name string) error {
	c.change.Lock()
	defer c.change.Unlock()
	c.mu.Lock()
	if c.shared[name] {
		return c.cancelShared(ctx, name)
	}
	cons, ok := c.extra[name]
	if !ok {
		consumed := false
		for _, q := range c.queues {
			consumed = consumed || q == name
		}
		c.mu.Unlock()
		if consumed {
			return fmt.Errorf("%w: %q", ErrStartupQueue, name)
		}
		return fmt.Errorf("%w: %q", ErrNotConsuming, name)
	}
	delete(c.extra, name)
	c.unlist(name)
	c.done = append(c.done, cons)
	c.mu.Unlock()
	if err := cons.Cancel(ctx); err != nil {
		return fmt.Errorf("worker: cancel consuming %q: %w", name, err)
	}
	c.log.Info("Stopped consuming from " + name)
	return nil
}

// cancelShared cancels a queue added to the main consumer; c.mu is held
// and released.
func (c *consumers) cancelShared(ctx context.Context, name string) error {
	delete(c.shared, name)
	c.unlist(name)
	adder := c.main.(transport.QueueAdder)
	c.mu.Unlock()
	if err := adder.CancelQueue(ctx, name); err != nil {
		return fmt.Errorf("worker: cancel consuming %q: %w", name, err)
	}
	c.log.Info("Stopped consuming from " + name)
	return nil
}

// unlist drops name from the consumed queues; c.mu is held.
func (c *consumers) unlist(name string) {
	for i, q := range c.queues {
		if q == name {
			c.queues = append(c.queues[:i:i], c.queues[i+1:]...)
			return
		}
	}
}

// stop refuses to add queues from now on (the worker shuts down).
func (c *consumers) stop() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
}

// cancelAdded cancels the consumers of added queues and waits for their
// dispatch loops. Queues added to the main consumer end with it.
func (c *consumers) cancelAdded(ctx context.Context) {
	c.mu.Lock()
	var cons []Consumer
	for _, e := range c.extra {
		cons = append(cons, e)
		c.done = append(c.done, e)
	}
	c.extra = map[string]Consumer{}
	c.mu.Unlock()
	for _, e := range cons {
		if err := e.Cancel(ctx); err != nil {
			c.log.Warn("cancel consumer", zap.Error(err))
			_ = e.Close()
		}
	}
	c.loops.Wait()
}

// closeAdded closes every added consumer.
func (c *consumers) closeAdded() {
	c.mu.Lock()
	done := c.done
	c.done = nil
	c.mu.Unlock()
	for _, e := range done {
		if err := e.Close(); err != nil {
			c.log.Debug("close consumer", zap.Error(err))
		}
	}
}

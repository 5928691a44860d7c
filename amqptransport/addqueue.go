package amqptransport

import (
	"context"
	"errors"
	"fmt"
	"slices"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/gworker/gworker/transport"
)

// MaxAddedQueues bounds how many queues AddQueue may add to a consumer:
// anyone on the broker can ask a worker to add a queue (add_consumer).
const MaxAddedQueues = 100

// ErrTooManyQueues: MaxAddedQueues queues were added to the consumer
// already.
var ErrTooManyQueues = errors.New("amqptransport: too many queues added")

// ErrGlobalQoS: the queue refuses the global QoS of the channel it would be
// consumed on (a quorum queue, or a queue of a type the broker did not
// tell, added to a consumer whose queues are classic).
var ErrGlobalQoS = errors.New("amqptransport: the queue refuses the channel's global QoS")

var _ transport.QueueAdder = (*Consumer)(nil)

// queueList returns the consumed queues (a snapshot).
func (c *Consumer) queueList() []Queue {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queues
}

// Queues returns the names of the queues the consumer takes messages from,
// start-up ones first.
func (c *Consumer) Queues() []string {
	qs := c.queueList()
	names := make([]string, len(qs))
	for i, q := range qs {
		names[i] = q.Name
	}
	return names
}

// AddQueue declares the task queue name as Broker.Consume does (or adopts
// it as it exists) and consumes it on the consumer's channel, with a
// consumer of its own (basic.consume) on that same channel
// (transport.QueueAdder). It is consumed again after every reconnect, as
// the start-up queues are.
//
// With global QoS (classic queues, what Celery does on RabbitMQ) the added
// queue shares the channel's prefetch window: adding queues never raises
// the number of messages held unsettled. A quorum queue (or one whose type
// the broker did not tell) cannot be consumed on such a channel, as
// RabbitMQ refuses global QoS for it and closes the connection: AddQueue
// returns ErrGlobalQoS, which matches transport.ErrSeparateConsumer too,
// and consumes nothing (the worker then consumes it with a consumer, and a
// window, of its own). With per-consumer QoS (one of
// the start-up queues is a quorum queue) the added queue's consumer gets
// the count of the channel's other consumers, as kombu's consumers each do
// (see ConsumerConfig.GlobalQoS): the window is then per queue.
//
// Adding a consumed queue is not an error; more than MaxAddedQueues is
// ErrTooManyQueues.
func (c *Consumer) AddQueue(ctx context.Context, name string) error {
	if name == "" {
		return fmt.Errorf("%w: queue without a name", ErrInvalidConfig)
	}
	c.change.Lock()
	defer c.change.Unlock()
	c.mu.Lock()
	closed := c.canceling || c.stopped
	has := slices.ContainsFunc(c.queues, func(q Queue) bool { return q.Name == name })
	added := len(c.added)
	c.mu.Unlock()
	switch {
	case has:
		return nil
	case closed:
		return ErrClosed
	case added >= MaxAddedQueues:
		return fmt.Errorf("%w: %d queues were added already (at most %d)", ErrTooManyQueues, added, MaxAddedQueues)
	}
	q := c.b.TaskQueue(name)
	var quorum bool
	if !c.cfg.NoDeclare {
		s, err := c.b.main.get(ctx)
		if err != nil {
			return err
		}
		d, err := c.b.declareOrAdopt(ctx, s.conn, q)
		if err != nil {
			return err
		}
		quorum = d.typ == QueueTypeQuorum
		c.mu.Lock()
		global := c.global
		c.mu.Unlock()
		if global && d.typ != QueueTypeClassic {
			typ := d.typ
			if typ == "" {
				typ = "unknown"
			}
			c.log.Warn("queue not added to the consumer: it refuses global QoS",
				zap.String("queue", name), zap.String("queue_type", typ))
			return fmt.Errorf("%w (%w): queue %q (type %s)", ErrGlobalQoS, transport.ErrSeparateConsumer, name, typ)
		}
		if c.cfg.DelayedDelivery {
			t := delayTarget{q: q, exchangeType: d.exchangeType, quorum: quorum}
			c.b.noteTargets(t)
			if quorum {
				c.b.delay.consumed(ctx, s, []delayTarget{t}, c.log)
			}
		}
	}
	c.mu.Lock()
	if c.canceling || c.stopped {
		c.mu.Unlock()
		return ErrClosed
	}
	c.queues = append(slices.Clone(c.queues), q)
	c.added[name] = true
	gen := c.gen
	c.mu.Unlock()
	if gen == nil {
		return nil // consumed when the channel opens again
	}
	if quorum {
		gen.tmu.Lock()
		gen.quorum[name] = true
		gen.tmu.Unlock()
	}
	err := c.reconcile(gen)
	var ae *amqp.Error
	if err != nil && errors.As(err, &ae) && !isConnectionLevel(ae) {
		// The broker refused to consume the queue (and closed the
		// channel): it is not consumed.
		c.drop(name)
		return err
	}
	if err != nil {
		// The channel or connection went away: the queue is consumed
		// when it opens again.
		c.log.Debug("added queue consumed after the channel opens again", zap.String("queue", name), zap.Error(err))
	}
	return nil
}

// drop removes name from the consumed queues.
func (c *Consumer) drop(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := slices.IndexFunc(c.queues, func(q Queue) bool { return q.Name == name }); i >= 0 {
		c.queues = slices.Delete(slices.Clone(c.queues), i, i+1)
	}
	delete(c.added, name)
}

// CancelQueue stops consuming the queue (basic.cancel of its consumer,
// transport.QueueAdder) and returns once the broker confirmed it or ctx
// ends. Messages the broker sent before the cancellation are still handed
// over; deliveries stay valid. It is not consumed again after a reconnect.
// A queue not consumed is transport.ErrNotConsuming; the last queue cannot
// be cancelled (Cancel the consumer instead).
func (c *Consumer) CancelQueue(ctx context.Context, name string) error {
	c.change.Lock()
	defer c.change.Unlock()
	c.mu.Lock()
	i := slices.IndexFunc(c.queues, func(q Queue) bool { return q.Name == name })
	if i < 0 {
		c.mu.Unlock()
		return fmt.Errorf("%w: %q", transport.ErrNotConsuming, name)
	}
	if len(c.queues) == 1 {
		c.mu.Unlock()
		return fmt.Errorf("%w: %q is the last queue of the consumer", ErrInvalidConfig, name)
	}
	c.queues = slices.Delete(slices.Clone(c.queues), i, i+1)
	delete(c.added, name)
	gen := c.gen
	c.mu.Unlock()
	if gen == nil {
		return nil
	}
	errc := make(chan error, 1)
	go func() { errc <- c.reconcile(gen) }()
	select {
	case err := <-errc:
		if err != nil && (errors.Is(err, amqp.ErrClosed) || gen.ch.IsClosed()) {
			return nil // the channel is gone, and the queue with it
		}
		return err
	case <-ctx.Done():
		return fmt.Errorf("amqptransport: cancel queue %q: %w", name, context.Cause(ctx))
	}
}

// reconcile makes the channel's consumers match the consumed queues: it
// starts a consumer, in the current round, for each queue without one, and
// cancels the consumers of queues no longer consumed.
func (c *Consumer) reconcile(gen *chanGen) error {
	gen.restartMu.Lock()
	defer gen.restartMu.Unlock()
	if c.quiet() || gen.isClosed() {
		return nil
	}
	qs := c.queueList()
	gen.tmu.Lock()
	live := map[string][]string{}
	for tag, q := range gen.queues {
		live[q] = append(live[q], tag)
	}
	r := gen.cur
	quorum := false
	for _, q := range qs {
		quorum = quorum || gen.quorum[q.Name]
	}
	gen.tmu.Unlock()

	var missing []Queue
	for _, q := range qs {
		if _, ok := live[q.Name]; !ok {
			missing = append(missing, q)
		}
	}
	if len(missing) > 0 {
		if !gen.global && quorum && gen.maxPrefetch == 0 {
			// A quorum queue joins a channel of per-consumer QoS: its
			// consumer's count is capped as in open.
			gen.maxPrefetch = QuorumPrefetchMax
			if r.n > QuorumPrefetchMax {
				if err := c.applyQos(gen, QuorumPrefetchMax); err != nil {
					return err
				}
			}
		}
		chans, tags, err := c.consumeAll(gen, missing)
		if err != nil {
			return err
		}
		c.startForwarders(gen, r, chans, tags, missing)
		for _, q := range missing {
			c.log.Info("consuming an added queue", zap.String("queue", q.Name), zap.Uint64("channel_epoch", gen.seq))
		}
	}
	var errs []error
	for name, tags := range live {
		if slices.ContainsFunc(qs, func(q Queue) bool { return q.Name == name }) {
			continue
		}
		for _, tag := range tags {
			gen.tmu.Lock()
			gen.cancelled[tag] = true
			gen.tmu.Unlock()
			if err := gen.rpc(func() error { return gen.ch.Cancel(tag, false) }); err != nil {
				errs = append(errs, fmt.Errorf("amqptransport: cancel consumer %s of %q: %w", tag, name, err))
				continue
			}
			gen.tmu.Lock()
			delete(gen.queues, tag)
			gen.tmu.Unlock()
		}
		c.log.Info("stopped consuming a queue", zap.String("queue", name), zap.Uint64("channel_epoch", gen.seq))
	}
	return errors.Join(errs...)
}

// Package amqpworker connects a worker to RabbitMQ through amqptransport:
// it declares the worker's queues as kombu does and adapts the transport's
// consumer to worker.Broker.
package amqpworker

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

// Broker is a worker.Broker on an amqptransport.Broker.
type Broker struct {
	b     *amqptransport.Broker
	stale atomic.Int64
	// Queue builds the declaration of a queue name; nil means
	// the broker's TaskQueue (kombu's default task queue, of the broker's
	// default queue type).
	Queue func(name string) amqptransport.Queue
}

// New returns a worker.Broker consuming through b.
func New(b *amqptransport.Broker) *Broker { return &Broker{b: b} }

// Consume declares the queues (queues that exist with other arguments, such
// as quorum queues declared by Python, are consumed as they are) and starts
// consuming them with global QoS, as Celery does on RabbitMQ, or with
// per-consumer QoS when one of them is a quorum queue (Celery 5.5's
// worker_detect_quorum_queues), with batched acknowledgements.
func (a *Broker) Consume(ctx context.Context, queues []string, prefetch int) (worker.Consumer, error) {
	mk := a.Queue
	if mk == nil {
		mk = a.b.TaskQueue
	}
	qs := make([]amqptransport.Queue, len(queues))
	for i, n := range queues {
		qs[i] = mk(n)
	}
	// BatchAcks: the pool's acknowledgements share writes under load.
	c, err := a.b.Consume(ctx, amqptransport.ConsumerConfig{Queues: qs, Prefetch: prefetch, GlobalQoS: true, BatchAcks: true})
	if err != nil {
		return nil, err
	}
	out := make(chan worker.Delivery, 64)
	go func() {
		defer close(out)
		for d := range c.Deliveries() {
			out <- delivery{d, &a.stale}
		}
	}()
	return &consumer{c: c, out: out}, nil
}

type consumer struct {
	c   *amqptransport.Consumer
	out chan worker.Delivery
}

func (c *consumer) Deliveries() <-chan worker.Delivery { return c.out }
func (c *consumer) SetPrefetch(n int) error            { return c.c.SetPrefetch(n) }
func (c *consumer) Cancel(ctx context.Context) error   { return c.c.Cancel(ctx) }
func (c *consumer) Close() error                       { return c.c.Close() }

// StaleAcks returns how many acknowledgements were dropped because the
// channel their message came on was gone (the broker redelivers those).
func (a *Broker) StaleAcks() int64 { return a.stale.Load() }

type delivery struct {
	d     *amqptransport.Delivery
	stale *atomic.Int64
}

var (
	_ worker.DeliveryCounter = delivery{}
	_ worker.StaleChecker    = delivery{}
)

func (d delivery) Raw() *protocol.RawMessage { return &d.d.Raw }
func (d delivery) Ack() error {
	err := d.d.Ack()
	if errors.Is(err, amqptransport.ErrStaleDelivery) {
		d.stale.Add(1)
	}
	return err
}
func (d delivery) Reject(requeue bool) error { return d.d.Reject(requeue) }

// Stale reports a delivery whose channel closed (worker.StaleChecker).
func (d delivery) Stale() bool { return d.d.Stale() }

// DeliveryCount makes quorum queues' x-delivery-count the worker's count
// of redeliveries (worker.DeliveryCounter).
func (d delivery) DeliveryCount() (int, bool) { return d.d.DeliveryCount() }

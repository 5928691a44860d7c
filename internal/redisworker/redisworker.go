// Package redisworker connects a worker to a Redis broker through
// redistransport: it binds the worker's queues as kombu does and adapts the
// transport's consumer to worker.Broker.
package redisworker

import (
	"context"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/redistransport"
	"github.com/gworker/gworker/worker"
)

// Broker is a worker.Broker on a redistransport.Broker.
type Broker struct {
	b *redistransport.Broker
}

// New returns a worker.Broker consuming through b.
func New(b *redistransport.Broker) *Broker { return &Broker{b: b} }

// Consume binds the queues to their exchanges (kombu's _kombu.binding.*
// sets) and starts consuming them, prefetch bounding the unacknowledged
// messages as Celery's prefetch count does on Redis.
func (a *Broker) Consume(ctx context.Context, queues []string, prefetch int) (worker.Consumer, error) {
	c, err := a.b.Consume(ctx, redistransport.ConsumerConfig{Queues: queues, Prefetch: prefetch})
	if err != nil {
		return nil, err
	}
	out := make(chan worker.Delivery, 64)
	go func() {
		defer close(out)
		for d := range c.Deliveries() {
			out <- delivery{d}
		}
	}()
	return &consumer{c: c, out: out}, nil
}

type consumer struct {
	c   *redistransport.Consumer
	out chan worker.Delivery
}

func (c *consumer) Deliveries() <-chan worker.Delivery { return c.out }
func (c *consumer) SetPrefetch(n int) error            { return c.c.SetPrefetch(n) }
func (c *consumer) Cancel(ctx context.Context) error   { return c.c.Cancel(ctx) }
func (c *consumer) Close() error                       { return c.c.Close() }

type delivery struct{ d *redistransport.Delivery }

func (d delivery) Raw() *protocol.RawMessage { return &d.d.Raw }
func (d delivery) Ack() error                { return d.d.Ack() }
func (d delivery) Reject(requeue bool) error { return d.d.Reject(requeue) }

package rpcbackend

import (
	"context"
	"errors"
	"time"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// AMQP adapts an amqptransport.Broker to Transport.
type AMQP struct {
	Broker *amqptransport.Broker
}

var _ Transport = AMQP{}

// NewAMQP returns a client-side Backend reading its replies through b.
func NewAMQP(ctx context.Context, b *amqptransport.Broker, opts Options) (*Backend, error) {
	return New(ctx, AMQP{Broker: b}, opts)
}

// NewAMQPWorkerSide returns a store-only Backend publishing through b.
func NewAMQPWorkerSide(b *amqptransport.Broker) *Backend {
	return NewWorkerSide(b)
}

// Publish publishes through the broker (with publisher confirms).
func (t AMQP) Publish(ctx context.Context, exchange, routingKey string, msg *protocol.RawMessage) error {
	return t.Broker.Publish(ctx, exchange, routingKey, msg)
}

// ReplyQueue returns the queue Celery's rpc backend declares for client
// id oid: non-durable, auto-delete, x-expires in milliseconds, on the
// default exchange.
func ReplyQueue(oid string, expires time.Duration) amqptransport.Queue {
	return amqptransport.Queue{
		Name:       oid,
		AutoDelete: true,
		Arguments:  map[string]any{"x-expires": expires.Milliseconds()},
	}
}

// ConsumeReplies declares the reply queue and consumes it without acks.
func (t AMQP) ConsumeReplies(ctx context.Context, queue string, expires time.Duration) (<-chan *protocol.RawMessage, error) {
	c, err := t.Broker.NewConsumer(ctx, amqptransport.ConsumerConfig{
		Queues:      []amqptransport.Queue{ReplyQueue(queue, expires)},
		NoAck:       true,
		ConsumerTag: "gworker-rpc",
	})
	if err != nil {
		return nil, err
	}
	out := make(chan *protocol.RawMessage)
	go func() {
		defer close(out)
		defer c.Close()
		in := c.Deliveries()
		for {
			select {
			case <-ctx.Done():
				return
			case d, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- d.Raw():
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// Schemes are the result backend URL schemes this backend serves.
var Schemes = []string{"rpc"}

// ErrNeedsAMQP: rpc:// carries results on RabbitMQ, and the broker is not.
var ErrNeedsAMQP = errors.New("rpcbackend: rpc:// needs an AMQP broker")

// OpenBackend is the result.Opener of the rpc backend: on a worker, a
// store-only backend publishing replies through the broker; on a client,
// one that reads its replies from its reply queue.
func OpenBackend(ctx context.Context, _ string, o result.OpenOptions) (result.Backend, error) {
	b, ok := o.Broker.(*amqptransport.Broker)
	if !ok {
		return nil, ErrNeedsAMQP
	}
	if o.Worker {
		return NewAMQPWorkerSide(b), nil
	}
	expires := o.Expires
	if expires < 0 {
		expires = 0
	}
	rb, err := NewAMQP(ctx, b, Options{ReplyTo: o.ReplyTo, Expires: expires, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	return rb, nil
}

// Register registers OpenBackend for Schemes in r.
func Register(r *result.Registry) { r.Register(OpenBackend, Schemes...) }

package producer

import (
	"context"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/protocol"
)

// AMQP adapts an amqptransport.Broker to Publisher and Declarer: messages
// are published with publisher confirms, and each task queue is declared
// as kombu declares it (amqptransport.TaskQueue) before its first use.
type AMQP struct {
	Broker *amqptransport.Broker
}

var (
	_ Publisher = AMQP{}
	_ Declarer  = AMQP{}
)

// NewAMQP returns a Producer publishing through b.
func NewAMQP(b *amqptransport.Broker, opts Options) *Producer {
	return New(AMQP{Broker: b}, opts)
}

// Publish publishes msg and waits for the broker's confirm.
func (a AMQP) Publish(ctx context.Context, exchange, routingKey string, msg *protocol.RawMessage) error {
	return a.Broker.Publish(ctx, exchange, routingKey, msg)
}

// DeclareTaskQueue declares the durable direct exchange and durable queue
// named name, bound with routing key name.
func (a AMQP) DeclareTaskQueue(ctx context.Context, name string) error {
	return a.Broker.Declare(ctx, amqptransport.TaskQueue(name))
}

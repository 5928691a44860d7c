package worker

import (
	"context"

	"github.com/gworker/gworker/protocol"
)

// Delivery is one message handed to the worker by a transport.
type Delivery interface {
	// Raw returns the message as delivered.
	Raw() *protocol.RawMessage
	// Ack acknowledges the message.
	Ack() error
	// Reject rejects it; requeue=false drops it or dead-letters it.
	Reject(requeue bool) error
}

// Consumer is a running consumption of the worker's queues.
type Consumer interface {
	// Deliveries is closed when the consumer is cancelled or closed.
	Deliveries() <-chan Delivery
	// SetPrefetch changes how many unacknowledged messages the broker may
	// hand out.
	SetPrefetch(n int) error
	// Cancel stops the broker from delivering more messages; deliveries
	// already received stay valid.
	Cancel(ctx context.Context) error
	// Close ends consumption; unacknowledged messages return to the queue.
	Close() error
}

// Broker starts consumers.
type Broker interface {
	Consume(ctx context.Context, queues []string, prefetch int) (Consumer, error)
}

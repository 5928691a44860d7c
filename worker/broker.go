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

// DeliveryCounter is an optional interface of Delivery, for transports
// whose broker counts how many times it delivered a message (RabbitMQ
// quorum queues send x-delivery-count). The worker uses it to cap the
// redeliveries of a message whose task never finishes (Config.
// MaxRedeliveries); for deliveries without it the worker counts the
// redelivered ones in the result backend (result.RedeliveryCounter).
type DeliveryCounter interface {
	// DeliveryCount returns how many times the message was delivered
	// before this delivery (0 on the first one); ok is false when the
	// broker does not count.
	DeliveryCount() (n int, ok bool)
}

// StaleChecker is an optional interface of Delivery, for transports whose
// deliveries die with their channel: Stale reports that the delivery can
// no longer be settled because the broker has already taken the message
// back (and will deliver it again). The worker does not start an acks_late
// task whose delivery is stale: its run could not be acknowledged and
// would be repeated.
type StaleChecker interface {
	Stale() bool
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

// Broker starts consumers. It, Consumer and Delivery are the seam between
// the worker and a transport (internal/amqpworker, internal/redisworker,
// gworkertest). They are unstable: methods may be added in any release, so
// implement them outside gworker only with that in mind.
type Broker interface {
	Consume(ctx context.Context, queues []string, prefetch int) (Consumer, error)
}

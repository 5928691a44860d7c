package worker

import (
	"context"

	"github.com/gworker/gworker/transport"
)

// The worker's view of a transport: the types of package transport, the one
// seam between gworker and a broker.
type (
	// Delivery is one message handed to the worker by a transport.
	Delivery = transport.Delivery
	// DeliveryCounter is an optional interface of Delivery: the worker
	// caps redeliveries by the broker's count (quorum queues'
	// x-delivery-count) where the result store keeps none.
	DeliveryCounter = transport.DeliveryCounter
	// StaleChecker is an optional interface of Delivery: the worker does
	// not start an acks_late task whose delivery is stale, since its run
	// could not be acknowledged and would be repeated.
	StaleChecker = transport.StaleChecker
	// Consumer is a running consumption of the worker's queues.
	Consumer = transport.Consumer
)

// Broker starts consumers: the part of transport.Broker the worker uses.
// Every transport.Broker is one (amqptransport, redistransport, and
// gworkertest's in-memory broker).
type Broker interface {
	Consume(ctx context.Context, queues []string, prefetch int) (Consumer, error)
}

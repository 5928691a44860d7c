// Package control is Celery's remote control (the pidbox) for a gworker
// node, and a client that speaks it to any Celery or gworker node.
//
// A Node consumes its own queue, <node>.celery.pidbox, bound to the
// celery.pidbox fanout exchange, and answers `celery inspect` and
// `celery control` commands as a Celery 5.2.6 worker does: replies go to
// reply.celery.pidbox with the request's ticket, destination, pattern and
// matcher filter the nodes, a failing command replies {"error": ...} and an
// unknown one replies {"error": "KeyError('name')"}, as Celery's worker does.
// Commands run on the node's own goroutine: a flood of control messages
// never blocks task execution.
package control

import (
	"context"
	"fmt"
	"time"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/transport"
)

// Names and settings of Celery's mailbox (kombu pidbox, celery namespace).
const (
	Exchange      = "celery.pidbox"
	ReplyExchange = "reply.celery.pidbox"
	// QueueTTL and QueueExpires are Celery's control_queue_ttl (300 s) and
	// control_queue_expires (10 s), given to both the node's queue and the
	// client's reply queue.
	QueueTTL     = 300 * time.Second
	QueueExpires = 10 * time.Second
)

// QueueOptions say how the pidbox queue of a node and the reply queue of a
// client are declared, as Celery 5.6's control_queue_durable and
// control_queue_exclusive. The zero value is kombu's default, a
// non-durable auto-delete queue, which RabbitMQ 4.3 refuses unless its
// deprecated transient_nonexcl_queues feature is permitted: exclusive
// queues (which go with their connection) and durable ones are accepted.
// Both at once is ErrConfig.
type QueueOptions struct {
	Durable, Exclusive bool
}

// Validate reports QueueOptions Celery refuses too.
func (o QueueOptions) Validate() error {
	if o.Durable && o.Exclusive {
		return fmt.Errorf("%w: a control queue cannot be both durable and exclusive (an exclusive queue goes with its connection)", ErrConfig)
	}
	return nil
}

// apply sets o on q.
func (o QueueOptions) apply(q QueueSpec) QueueSpec {
	q.Durable, q.Exclusive = o.Durable, o.Exclusive
	return q
}

// QueueName returns the pidbox queue of a node: "<node>.celery.pidbox".
func QueueName(node string) string { return node + ".celery.pidbox" }

// QueueSpec describes a non-durable, auto-delete queue bound to an
// exchange, as kombu declares the pidbox and reply queues.
type QueueSpec = transport.QueueSpec

// Subscription is a running consumption of a queue without acknowledgements.
type Subscription = transport.Subscription

// Transport is what the pidbox needs from a broker: the part of
// transport.Broker that remote control uses. Every transport.Broker is one.
type Transport interface {
	Publish(ctx context.Context, exchange, routingKey string, msg *protocol.RawMessage) error
	// DeclareExchange declares a non-durable exchange of the given kind.
	DeclareExchange(ctx context.Context, name, kind string, durable bool) error
	// Subscribe declares q (and its exchange and binding) and consumes it.
	// Delivering must never block the broker connection: a subscriber
	// that falls behind loses messages instead.
	Subscribe(ctx context.Context, q QueueSpec) (Subscription, error)
}

// Package transport is the one seam between gworker and a message broker.
//
// A transport is one package that implements Broker directly (amqptransport
// for RabbitMQ, redistransport for kombu's Redis transport) and registers an
// Opener for its URL schemes in a Registry. Nothing else in gworker knows
// which broker it talks to: the worker consumes through Broker.Consume, the
// producer publishes through Broker.Publish, remote control and events go
// through Subscribe and Publish, and the App's queue administration and
// readiness probe through DeclareTaskQueue, PurgeQueue and QueueLength.
//
// # Adding a broker
//
// Write one package that implements Broker and register it:
//
//	r := transport.NewRegistry()
//	r.Register(mytransport.Open, "mybroker", "mybrokers")
//
// and pass the registry to the App (gworker.Config.Transports), or add it
// to gworker.DefaultTransports. A transport must:
//
//   - Consume: declare (or adopt as they exist) the task queues as kombu
//     declares them, deliver their messages as Delivery values on one
//     channel with no goroutine between the broker connection and that
//     channel, keep at most prefetch messages unsettled (0: no limit),
//     return unsettled messages to their queue when the Consumer closes, and
//     reconnect by itself after a broker fault;
//   - settle each Delivery exactly once through Ack or Reject, which must be
//     safe to call from any goroutine;
//   - Publish a task, a reply or an event to an exchange with a routing key,
//     returning only once the broker has taken the message (publisher
//     confirms on AMQP);
//   - DeclareExchange of the kinds Celery uses (direct, fanout, topic);
//   - Subscribe to a QueueSpec (the pidbox and reply queues, the events
//     receiver) without acknowledgements, dropping messages rather than
//     blocking the broker connection when the reader falls behind;
//   - DeclareTaskQueue, PurgeQueue and QueueLength for administration and
//     the readiness probe, and Close.
//
// What only some brokers can do is an optional interface checked with a type
// assertion, in the style of database/sql/driver: DeliveryCounter,
// StaleChecker and Parker on a Delivery, QueueAdder on a Consumer,
// ReconnectCounter, StaleAckCounter and DelayPublisher on a Broker.
package transport

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/internal/schemes"
	"github.com/gworker/gworker/protocol"
)

// Delivery is one task message taken from a queue.
type Delivery interface {
	// Raw returns the message as delivered.
	Raw() *protocol.RawMessage
	// Ack acknowledges the message.
	Ack() error
	// Reject rejects it; requeue=false drops it or dead-letters it.
	Reject(requeue bool) error
}

// DeliveryCounter is an optional interface of Delivery, for brokers that
// count how many times they delivered a message (RabbitMQ quorum queues send
// x-delivery-count). The worker uses it to cap the redeliveries of a message
// whose task never finishes.
type DeliveryCounter interface {
	// DeliveryCount returns how many times the message was delivered
	// before this delivery (0 on the first one); ok is false when the
	// broker does not count.
	DeliveryCount() (n int, ok bool)
}

// StaleChecker is an optional interface of Delivery, for transports whose
// deliveries die with their channel: Stale reports that the delivery can no
// longer be settled because the broker has already taken the message back
// (and will deliver it again).
type StaleChecker interface {
	Stale() bool
}

// QueueOf is an optional interface of Delivery, for transports that tell
// which of the consumed queues a message came from; without it the worker
// takes the delivery's routing key for the queue.
type QueueOf interface {
	ConsumedFrom() string
}

// Published is an optional interface of Delivery, for brokers whose
// messages may carry the time their producer published them (the AMQP
// timestamp property). Celery's producers set none; PublishedAt is then
// zero.
type Published interface {
	PublishedAt() time.Time
}

// Parker is an optional interface of Delivery, for transports that can keep
// a delivery that waits long to be settled (an ETA message the worker holds
// until it is due) in less memory than the delivered message takes: the
// worker keeps its own compact copy of the message meanwhile. Park returns
// a handle that settles the message, or gives it back as a Delivery; the
// Delivery Park was called on must not be used after.
type Parker interface {
	Park() Parked
}

// Parked is a delivery without its message (see Parker). Ack and Reject are
// those of the Delivery it was; after Unpark, only the Delivery Unpark
// returned may be used.
type Parked interface {
	Ack() error
	Reject(requeue bool) error
	// Unpark returns the delivery again, with m as its message (Raw).
	Unpark(m *protocol.RawMessage) Delivery
}

// Consumer is a running consumption of task queues.
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

// QueueAdder is an optional interface of Consumer, for transports that can
// change the queues a running consumer takes messages from (Celery's
// add_consumer and cancel_consumer). Added queues share the consumer's
// connection and its prefetch window, as kombu multiplexes every consumed
// queue on one channel: adding many queues costs no connection and does not
// multiply the messages held unsettled.
type QueueAdder interface {
	// AddQueue declares the task queue name (or adopts it as it exists)
	// and starts taking its messages. Adding a consumed queue is not an
	// error. It fails with ErrSeparateConsumer when the queue cannot share
	// the consumer (a RabbitMQ quorum queue refuses the global QoS of a
	// channel of classic queues): the caller may consume it apart.
	AddQueue(ctx context.Context, name string) error
	// CancelQueue stops taking messages from the queue name. Messages of
	// that queue taken but not handed over return to it; deliveries
	// already handed over stay valid. It fails with ErrNotConsuming when
	// the consumer does not take name.
	CancelQueue(ctx context.Context, name string) error
}

// ErrNotConsuming: the consumer does not take messages from that queue.
var ErrNotConsuming = errors.New("transport: not consuming from that queue")

// ErrSeparateConsumer: QueueAdder.AddQueue cannot add that queue to the
// consumer, which goes on as it was; a consumer of its own (Consume) can
// take it.
var ErrSeparateConsumer = errors.New("transport: the queue needs a consumer of its own")

// QueueSpec describes a queue bound to an exchange, as kombu declares the
// pidbox and reply queues: non-durable and auto-delete unless Durable or
// Exclusive says otherwise.
type QueueSpec struct {
	Name         string
	Exchange     string
	ExchangeType string // "fanout", "direct" or "topic"
	RoutingKey   string
	// Expires (x-expires) and MessageTTL (x-message-ttl); zero: none.
	Expires, MessageTTL time.Duration
	// Durable declares a durable queue that is not auto-deleted, and
	// Exclusive a queue only its connection uses and that goes with it
	// (Celery 5.6's control_queue_durable and control_queue_exclusive):
	// the kinds of queue RabbitMQ 4.3 accepts, as it refuses transient
	// non-exclusive ones. At most one of them. Brokers without such queues
	// ignore both.
	Durable, Exclusive bool
}

// Bounds of a Subscription, which anyone on the broker can fill: messages
// wait for their reader in a buffer of SubscriptionBuffer, and a message
// whose body is over MaxSubscriptionMessage bytes is dropped (Celery's
// control messages and replies are a few KiB).
const (
	SubscriptionBuffer     = 256
	MaxSubscriptionMessage = 1 << 20
)

// Subscription is a running consumption of a queue without
// acknowledgements.
type Subscription interface {
	// Messages is closed when the subscription ends.
	Messages() <-chan *protocol.RawMessage
	Close() error
}

// Broker is a connection to a message broker: what every transport
// implements.
type Broker interface {
	// Consume declares the task queues (or adopts them as they exist) and
	// starts consuming them, at most prefetch messages unsettled.
	Consume(ctx context.Context, queues []string, prefetch int) (Consumer, error)
	// Publish sends msg to exchange with routingKey ("" is the default
	// exchange) and returns once the broker has it.
	Publish(ctx context.Context, exchange, routingKey string, msg *protocol.RawMessage) error
	// DeclareExchange declares an exchange of the given kind.
	DeclareExchange(ctx context.Context, name, kind string, durable bool) error
	// Subscribe declares q (and its exchange and binding) and consumes it
	// without acknowledgements.
	Subscribe(ctx context.Context, q QueueSpec) (Subscription, error)
	// DeclareTaskQueue declares a task queue as kombu does: a durable
	// direct exchange and a durable queue, both named name, bound with
	// routing key name.
	DeclareTaskQueue(ctx context.Context, name string) error
	// PurgeQueue discards the queue's waiting messages and says how many.
	PurgeQueue(ctx context.Context, name string) (int, error)
	// QueueLength returns how many messages wait in the queue; an error
	// means the broker cannot be used (the readiness probe).
	QueueLength(ctx context.Context, name string) (int, error)
	// Close closes the connection.
	Close() error
}

// ReconnectCounter is an optional interface of Broker: how many times the
// transport replaced a lost connection.
type ReconnectCounter interface {
	Reconnects() uint64
}

// StaleAckCounter is an optional interface of Broker: how many
// acknowledgements were dropped because the channel their message came on
// was gone (the broker redelivers those).
type StaleAckCounter interface {
	StaleAcks() int64
}

// DelayPublisher is an optional interface of Broker, for brokers that can
// hold a message until it is due (RabbitMQ's native delayed delivery, as
// Celery 5.5 uses it for quorum queues). PublishDelayed publishes msg as
// Publish does; due is when the message is due (its eta). The transport
// may route it so that the broker delivers it about then, or publish it
// as Publish does; either way the consumer holds a message that arrives
// before it is due.
type DelayPublisher interface {
	PublishDelayed(ctx context.Context, exchange, routingKey string, msg *protocol.RawMessage, due time.Time) error
}

// Options are what an Opener may use besides the URL. Transports ignore
// what does not apply to them.
type Options struct {
	// Logger receives the transport's log lines; nil logs nothing.
	Logger *zap.Logger
	// ConnectionName names the connection on the broker, where it can.
	ConnectionName string
	// Heartbeat is the connection heartbeat interval; 0 is the
	// transport's default.
	Heartbeat time.Duration
	// DefaultQueueType is the type of the queues the transport creates
	// ("classic" or "quorum" on RabbitMQ).
	DefaultQueueType string
	// DefaultExchangeType is the type of the exchange declared for each
	// task queue ("direct", the default, "topic" or "fanout"), as
	// Celery's task_default_exchange_type.
	DefaultExchangeType string
	// DelayedDeliveryQueueType is the type of the queues of RabbitMQ's
	// native delayed delivery ("quorum", the default, or "classic"), as
	// Celery 5.5's broker_native_delayed_delivery_queue_type.
	DelayedDeliveryQueueType string
	// TransportOptions are kombu's broker_transport_options, values as
	// text.
	TransportOptions map[string]string
}

// Opener connects to the broker of url, waiting for it until ctx ends.
type Opener func(ctx context.Context, url string, o Options) (Broker, error)

// ErrUnsupportedScheme: no transport is registered for the URL's scheme.
var ErrUnsupportedScheme = errors.New("unsupported broker")

// Registry maps URL schemes to the Openers of their transports. The zero
// value is not usable: use NewRegistry. A Registry is safe for concurrent
// Open once it is filled.
type Registry struct {
	openers *schemes.Table[Opener]
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry { return &Registry{openers: schemes.New[Opener](false)} }

// Register makes open serve URLs of each of the schemes (case does not
// matter). A later registration of a scheme replaces the earlier one.
func (r *Registry) Register(open Opener, schemes ...string) { r.openers.Set(open, schemes...) }

// Schemes lists the registered schemes, sorted.
func (r *Registry) Schemes() []string { return r.openers.Names() }

// Supports reports whether url's scheme has a transport.
func (r *Registry) Supports(url string) bool {
	_, ok := r.openers.Lookup(url)
	return ok
}

// Open connects to the broker of url through the transport registered for
// its scheme. An unknown scheme is ErrUnsupportedScheme.
func (r *Registry) Open(ctx context.Context, url string, o Options) (Broker, error) {
	open, ok := r.openers.Lookup(url)
	if !ok {
		return nil, fmt.Errorf("%w: scheme %q (%s)", ErrUnsupportedScheme, Scheme(url), r.openers.List())
	}
	return open(ctx, url, o)
}

// Scheme returns the lower-cased scheme of a URL ("" when it has none). A
// ;-separated failover list has the scheme of its first URL.
func Scheme(url string) string { return schemes.Of(url) }

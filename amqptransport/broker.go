package amqptransport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"
)

// Broker is a RabbitMQ connection with reconnection: one connection for
// consuming and declaring, and a second one, opened on the first Publish, for
// publishing (RabbitMQ blocks publishing connections under a resource
// alarm, which must not stall consumers' acknowledgements).
//
// A Broker is safe for concurrent use.
type Broker struct {
	cfg Config
	eps []endpoint
	log *zap.Logger

	main *connManager

	pubOnce sync.Once
	pubConn *connManager
	pub     *publisher

	sweepMu sync.Mutex

	mu        sync.Mutex
	closed    bool
	consumers map[*Consumer]struct{}
	// adopted is what the broker said of each queue adopted so far, so
	// that a reconnect does not log the same WARN line again.
	adopted map[string]string
	// logged is the last error logged at WARN for each delayed delivery
	// step, so a retried failure is not logged at WARN again.
	logged map[string]string
	// targets are the task queues declared so far (consumed, or declared
	// for a producer), for the routing of delayed publishes.
	targets map[string]delayTarget

	delay *delaySetup

	staleAcks atomic.Int64
}

// Dial connects to the broker. The first connection must succeed: Dial
// retries with backoff until it does or ctx ends. After that, a lost
// connection is re-established in the background, and consumers and
// publishers resume on the new one.
func Dial(ctx context.Context, cfg Config) (*Broker, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	eps, err := parseURLs(cfg.URL)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.Named("amqp")
	b := &Broker{cfg: cfg, eps: eps, log: log, consumers: make(map[*Consumer]struct{}), adopted: map[string]string{},
		targets: map[string]delayTarget{}, logged: map[string]string{}}
	b.delay = newDelaySetup(b)
	b.main = newConnManager(cfg, eps, cfg.ConnectionName, log.With(zap.String("connection", "main")))
	if err := b.main.start(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// Close closes every consumer and both connections. Unacknowledged
// deliveries return to their queues. Close is idempotent.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	cons := make([]*Consumer, 0, len(b.consumers))
	for c := range b.consumers {
		cons = append(cons, c)
	}
	b.mu.Unlock()
	var errs []error
	for _, c := range cons {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	b.delay.close()
	// Make sure a later Publish cannot start the publishing connection.
	b.pubOnce.Do(func() {})
	if b.pub != nil {
		b.pub.close()
	}
	if b.pubConn != nil {
		if err := b.pubConn.shutdown(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := b.main.shutdown(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (b *Broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Queue describes a queue, the exchange it is bound to and the binding, with
// the flags kombu uses, so that declarations from Go and from Python are
// equivalent (RabbitMQ refuses a redeclaration with different flags or
// arguments with PRECONDITION_FAILED).
type Queue struct {
	Name       string
	Durable    bool
	AutoDelete bool
	Exclusive  bool
	// Arguments are the queue arguments (x-expires, x-message-ttl,
	// x-max-priority, ...). Integer values are sent as AMQP integers.
	Arguments map[string]any

	// Exchange is the exchange to bind the queue to; empty means the
	// default exchange, which needs no declaration nor binding.
	Exchange        string
	ExchangeType    string // direct (default), topic, fanout, headers
	ExchangeDurable bool
	// ExchangeAutoDelete is kombu's Exchange(auto_delete=...), false for
	// every exchange Celery declares.
	ExchangeAutoDelete bool
	// RoutingKey is the binding key.
	RoutingKey string

	// adoptExchange: the exchange exists with another type or flags and
	// is used as it is (passively), not declared.
	adoptExchange bool
}

// TaskQueue returns the queue kombu declares for a Celery task queue: a
// durable direct exchange named like the queue, a durable queue without
// arguments, and a binding with the queue name as key. It is what both a
// Celery worker (task_queues default) and a client publishing with
// queue="name" declare.
func TaskQueue(name string) Queue {
	return Queue{
		Name:            name,
		Durable:         true,
		Exchange:        name,
		ExchangeType:    "direct",
		ExchangeDurable: true,
		RoutingKey:      name,
	}
}

// Declare declares the exchange (unless it is the default one), the queue
// and the binding, with exactly the given flags. A queue that already exists
// with other flags gives an error wrapping the broker's *amqp.Error
// (code 406 PRECONDITION_FAILED); the connection stays usable.
func (b *Broker) Declare(ctx context.Context, q Queue) error {
	s, err := b.main.get(ctx)
	if err != nil {
		return err
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("amqptransport: open channel: %w", err)
	}
	defer ch.Close()
	return withContext(ctx, ch, func() error { return declareOn(ch, q) })
}

// Reconnects returns how many times the consuming connection was
// re-established after it was lost.
func (b *Broker) Reconnects() uint64 {
	b.main.mu.Lock()
	defer b.main.mu.Unlock()
	if b.main.epoch == 0 {
		return 0
	}
	return b.main.epoch - 1
}

// DeclareExchange declares an exchange alone (not auto-deleted, no
// arguments), as kombu declares celeryev (topic, durable) or the pidbox
// exchanges (fanout and direct, not durable).
func (b *Broker) DeclareExchange(ctx context.Context, name, kind string, durable bool) error {
	s, err := b.main.get(ctx)
	if err != nil {
		return err
	}
	return b.declareExchangeOn(ctx, s.conn, name, kind, durable)
}

// declareExchangeOn declares an exchange on a channel of its own over conn;
// one that exists with another type or flags is adopted.
func (b *Broker) declareExchangeOn(ctx context.Context, conn *amqp.Connection, name, kind string, durable bool) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("amqptransport: open channel: %w", err)
	}
	defer ch.Close()
	err = withContext(ctx, ch, func() error {
		if err := ch.ExchangeDeclare(name, kind, durable, false, false, false, nil); err != nil {
			return &exchangeDeclareError{fmt.Errorf("amqptransport: declare exchange %q: %w", name, err)}
		}
		return nil
	})
	if !isExchangePrecondition(err) {
		return err
	}
	// The exchange exists with another type or flags (declared by a
	// Celery 5.5 app, say): use it as the broker has it.
	return b.adoptExchange(ctx, conn, name, kind, err)
}

// withContext runs fn, which blocks on broker replies on ch, and closes ch
// when ctx ends first so fn returns.
func withContext(ctx context.Context, ch *amqp.Channel, fn func() error) error {
	stop := context.AfterFunc(ctx, func() { _ = ch.Close() })
	err := fn()
	if !stop() {
		return fmt.Errorf("amqptransport: %w", context.Cause(ctx))
	}
	return err
}

func declareOn(ch *amqp.Channel, q Queue) error {
	if q.Name == "" {
		return fmt.Errorf("%w: queue without a name", ErrInvalidConfig)
	}
	args, err := HeadersToAMQP(q.Arguments)
	if err != nil {
		return fmt.Errorf("amqptransport: queue %q arguments: %w", q.Name, err)
	}
	if len(args) == 0 {
		args = nil
	}
	if q.Exchange != "" && !q.adoptExchange {
		typ := q.ExchangeType
		if typ == "" {
			typ = "direct"
		}
		if err := ch.ExchangeDeclare(q.Exchange, typ, q.ExchangeDurable, q.ExchangeAutoDelete, false, false, nil); err != nil {
			return &exchangeDeclareError{fmt.Errorf("amqptransport: declare exchange %q: %w", q.Exchange, err)}
		}
	}
	if _, err := ch.QueueDeclare(q.Name, q.Durable, q.AutoDelete, q.Exclusive, false, args); err != nil {
		return &queueDeclareError{fmt.Errorf("amqptransport: declare queue %q: %w", q.Name, err)}
	}
	if q.Exchange != "" {
		if err := ch.QueueBind(q.Name, q.RoutingKey, q.Exchange, false, nil); err != nil {
			return fmt.Errorf("amqptransport: bind queue %q to %q: %w", q.Name, q.Exchange, err)
		}
	}
	return nil
}

// DeleteQueue deletes a queue whatever its content and consumers, and
// returns how many messages it held. Deleting a missing queue is not an
// error.
func (b *Broker) DeleteQueue(ctx context.Context, name string) (int, error) {
	return b.queueOp(ctx, "delete", name, func(ch *amqp.Channel) (int, error) {
		return ch.QueueDelete(name, false, false, false)
	})
}

// queueOp runs op on a channel of its own, so that a broker error (the
// queue is missing) closes no channel anything else uses.
func (b *Broker) queueOp(ctx context.Context, verb, name string, op func(*amqp.Channel) (int, error)) (int, error) {
	s, err := b.main.get(ctx)
	if err != nil {
		return 0, err
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return 0, fmt.Errorf("amqptransport: open channel: %w", err)
	}
	defer ch.Close()
	var n int
	err = withContext(ctx, ch, func() error {
		var err error
		n, err = op(ch)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("amqptransport: %s queue %q: %w", verb, name, err)
	}
	return n, nil
}

// QueueState is what a passive declaration reports about a queue.
type QueueState struct {
	Messages  int // ready messages (not counting unacknowledged ones)
	Consumers int
}

// Inspect reports the ready message and consumer counts of a queue without
// changing it (passive declaration). A missing queue gives an error wrapping
// *amqp.Error with code 404.
func (b *Broker) Inspect(ctx context.Context, name string) (QueueState, error) {
	s, err := b.main.get(ctx)
	if err != nil {
		return QueueState{}, err
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return QueueState{}, fmt.Errorf("amqptransport: open channel: %w", err)
	}
	defer ch.Close()
	var st QueueState
	err = withContext(ctx, ch, func() error {
		q, err := ch.QueueDeclarePassive(name, false, false, false, false, nil)
		st = QueueState{Messages: q.Messages, Consumers: q.Consumers}
		return err
	})
	if err != nil {
		return QueueState{}, fmt.Errorf("amqptransport: inspect queue %q: %w", name, err)
	}
	return st, nil
}

// TaskQueue returns the declaration of the task queue name as this broker
// creates it: TaskQueue(name) with an exchange of Config.DefaultExchangeType
// (Celery's task_default_exchange_type), and the x-queue-type argument when
// Config.DefaultQueueType is quorum (Celery 5.5's task_default_queue_type).
func (b *Broker) TaskQueue(name string) Queue {
	q := TaskQueue(name)
	q.ExchangeType = b.cfg.DefaultExchangeType
	if b.cfg.DefaultQueueType == QueueTypeQuorum {
		q.Arguments = map[string]any{"x-queue-type": QueueTypeQuorum}
	}
	return q
}

// DeclareTaskQueue declares the durable direct exchange and durable queue
// named name, bound with routing key name, as kombu declares a task queue
// (Broker.TaskQueue). A queue that already exists with other arguments
// (declared as a quorum queue by a Python client, say) is used as it is,
// with a WARN line saying what the broker has. With Publish it makes a
// Broker a producer's publisher.
func (b *Broker) DeclareTaskQueue(ctx context.Context, name string) error {
	s, err := b.main.get(ctx)
	if err != nil {
		return err
	}
	q := b.TaskQueue(name)
	d, err := b.declareOrAdopt(ctx, s.conn, q)
	if err != nil {
		return err
	}
	b.noteTargets(delayTarget{q: q, exchangeType: d.exchangeType, quorum: d.typ == QueueTypeQuorum})
	return nil
}

// PurgeQueue discards the ready messages of a queue (celery purge, celery
// worker --purge) and returns how many there were; unacknowledged ones are
// untouched. Purging a missing queue is an error from the broker
// (NOT_FOUND).
func (b *Broker) PurgeQueue(ctx context.Context, name string) (int, error) {
	return b.queueOp(ctx, "purge", name, func(ch *amqp.Channel) (int, error) {
		return ch.QueuePurge(name, false)
	})
}

// ConnectedURL returns the URL (password redacted) of the broker the
// consuming connection is on, or was last on: with a failover list
// (Config.URL), the node of a cluster the worker uses.
func (b *Broker) ConnectedURL() string { return RedactURL(b.main.endpoint().raw) }

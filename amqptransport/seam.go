package amqptransport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/transport"
)

// Schemes are the broker URL schemes this transport serves (pyamqp:// is
// Celery's name for the same transport).
var Schemes = []string{"amqp", "amqps", "pyamqp"}

var (
	_ transport.Broker         = (*Broker)(nil)
	_ transport.DelayPublisher = (*Broker)(nil)
)

// Open is the transport.Opener of RabbitMQ: Dial with the URL and options.
func Open(ctx context.Context, url string, o transport.Options) (transport.Broker, error) {
	b, err := Dial(ctx, Config{URL: url, Logger: o.Logger, ConnectionName: o.ConnectionName,
		DefaultQueueType: o.DefaultQueueType, DefaultExchangeType: o.DefaultExchangeType,
		DelayedDeliveryQueueType: o.DelayedDeliveryQueueType, Heartbeat: o.Heartbeat})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Register registers Open for Schemes in r.
func Register(r *transport.Registry) { r.Register(Open, Schemes...) }

// Consume declares the task queues as kombu does (queues that exist with
// other arguments, such as quorum queues declared by Python, are consumed as
// they are) and consumes them with global QoS, as Celery does on RabbitMQ,
// or with per-consumer QoS when one of them is a quorum queue (Celery 5.5's
// worker_detect_quorum_queues), with batched acknowledgements and, when one
// of them is a quorum queue, native delayed delivery set up as Celery 5.5's
// worker does (ConsumerConfig.DelayedDelivery). It is the worker's side of
// transport.Broker; NewConsumer offers every option.
func (b *Broker) Consume(ctx context.Context, queues []string, prefetch int) (transport.Consumer, error) {
	qs := make([]Queue, len(queues))
	for i, n := range queues {
		qs[i] = b.TaskQueue(n)
	}
	// BatchAcks: the pool's acknowledgements share writes under load.
	c, err := b.NewConsumer(ctx, ConsumerConfig{Queues: qs, Prefetch: prefetch, GlobalQoS: true, BatchAcks: true,
		DelayedDelivery: true})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// StaleAcks returns how many acknowledgements were dropped because the
// channel their message came on was gone (the broker redelivers those).
func (b *Broker) StaleAcks() int64 { return b.staleAcks.Load() }

// QueueLength returns the number of ready messages of a queue (a passive
// declaration); a missing queue is an error.
func (b *Broker) QueueLength(ctx context.Context, name string) (int, error) {
	st, err := b.Inspect(ctx, name)
	return st.Messages, err
}

// QueueConsumers returns how many consumers a queue has (a passive
// declaration); a missing queue has none.
func (b *Broker) QueueConsumers(ctx context.Context, name string) (int, error) {
	st, err := b.Inspect(ctx, name)
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.NotFound {
		return 0, nil
	}
	return st.Consumers, err
}

// Subscribe declares q as kombu declares the pidbox and reply queues
// (auto-delete, x-expires and x-message-ttl; durable and not auto-delete
// with q.Durable, exclusive with q.Exclusive) and consumes it without
// acknowledgements. An exclusive queue goes with its connection and is
// declared again on the next one.
func (b *Broker) Subscribe(ctx context.Context, q transport.QueueSpec) (transport.Subscription, error) {
	if q.Durable && q.Exclusive {
		return nil, fmt.Errorf("%w: queue %q both durable and exclusive (an exclusive queue goes with its connection)", ErrInvalidConfig, q.Name)
	}
	args := map[string]any{}
	if q.Expires > 0 {
		args["x-expires"] = q.Expires.Milliseconds()
	}
	if q.MessageTTL > 0 {
		args["x-message-ttl"] = q.MessageTTL.Milliseconds()
	}
	c, err := b.NewConsumer(ctx, ConsumerConfig{
		Queues: []Queue{{
			Name: q.Name, Durable: q.Durable, AutoDelete: !q.Durable, Exclusive: q.Exclusive, Arguments: args,
			Exchange: q.Exchange, ExchangeType: q.ExchangeType, RoutingKey: q.RoutingKey,
		}},
		NoAck:       true,
		ConsumerTag: "gworker-pidbox",
	})
	if err != nil {
		return nil, err
	}
	s := &subscription{c: c, out: make(chan *protocol.RawMessage, transport.SubscriptionBuffer), done: make(chan struct{})}
	go s.forward(b.log, q.Name)
	return s, nil
}

type subscription struct {
	c       *Consumer
	out     chan *protocol.RawMessage
	done    chan struct{}
	dropped atomic.Int64
	once    sync.Once
	err     error
}

// forward hands the messages over without ever blocking the consumer:
// what the reader has not taken when the buffer is full is dropped, and so
// is a message over transport.MaxSubscriptionMessage.
func (s *subscription) forward(log *zap.Logger, queue string) {
	defer close(s.done)
	defer close(s.out)
	for d := range s.c.Deliveries() {
		if n := len(d.Raw().Body); n > transport.MaxSubscriptionMessage {
			log.Warn("control: message too large; dropped", zap.String("queue", queue), zap.Int("bytes", n))
			continue
		}
		select {
		case s.out <- d.Raw():
		default:
			if s.dropped.Add(1) == 1 {
				log.Warn("control: too many control messages waiting; dropping them", zap.String("queue", queue))
			}
		}
	}
}

func (s *subscription) Messages() <-chan *protocol.RawMessage { return s.out }

// Close ends the consumption; unread messages are dropped.
func (s *subscription) Close() error {
	s.once.Do(func() {
		s.err = s.c.Close()
		// Let the forwarder finish even if nobody reads any more.
		go func() {
			for range s.out {
			}
		}()
		<-s.done
	})
	return s.err
}

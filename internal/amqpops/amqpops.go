// Package amqpops carries the operations plane (events and remote control)
// over RabbitMQ through amqptransport.
package amqpops

import (
	"context"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/control"
	"github.com/gworker/gworker/protocol"
)

// SubscriptionBuffer is how many control messages wait for their handler;
// beyond it new ones are dropped, so that a flood never holds up the
// connection the tasks are consumed on.
const SubscriptionBuffer = 1024

// Transport is a control.Transport (and an events.Publisher with exchange
// declaration) on an amqptransport.Broker.
type Transport struct {
	b   *amqptransport.Broker
	log *zap.Logger
}

// New returns a transport on b; log may be nil.
func New(b *amqptransport.Broker, log *zap.Logger) *Transport {
	if log == nil {
		log = zap.NewNop()
	}
	return &Transport{b: b, log: log}
}

// Publish publishes msg.
func (t *Transport) Publish(ctx context.Context, exchange, key string, msg *protocol.RawMessage) error {
	return t.b.Publish(ctx, exchange, key, msg)
}

// DeclareExchange declares an exchange.
func (t *Transport) DeclareExchange(ctx context.Context, name, kind string, durable bool) error {
	return t.b.DeclareExchange(ctx, name, kind, durable)
}

// Subscribe declares q as kombu declares the pidbox queues and consumes it
// without acknowledgements.
func (t *Transport) Subscribe(ctx context.Context, q control.QueueSpec) (control.Subscription, error) {
	args := map[string]any{}
	if q.Expires > 0 {
		args["x-expires"] = q.Expires.Milliseconds()
	}
	if q.MessageTTL > 0 {
		args["x-message-ttl"] = q.MessageTTL.Milliseconds()
	}
	c, err := t.b.Consume(ctx, amqptransport.ConsumerConfig{
		Queues: []amqptransport.Queue{{
			Name: q.Name, AutoDelete: true, Arguments: args,
			Exchange: q.Exchange, ExchangeType: q.ExchangeType, RoutingKey: q.RoutingKey,
		}},
		NoAck:       true,
		ConsumerTag: "gworker-pidbox",
	})
	if err != nil {
		return nil, err
	}
	s := &subscription{c: c, out: make(chan *protocol.RawMessage, SubscriptionBuffer), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer close(s.out)
		for d := range c.Deliveries() {
			raw := d.Raw
			select {
			case s.out <- &raw:
			default:
				if s.dropped.Add(1) == 1 {
					t.log.Warn("control: too many control messages waiting; dropping them", zap.String("queue", q.Name))
				}
			}
		}
	}()
	return s, nil
}

type subscription struct {
	c       *amqptransport.Consumer
	out     chan *protocol.RawMessage
	done    chan struct{}
	dropped atomic.Int64
	once    sync.Once
	err     error
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

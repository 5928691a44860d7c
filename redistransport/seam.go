package redistransport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/transport"
)

// Schemes are the broker URL schemes this transport serves.
var Schemes = []string{"redis", "rediss", "sentinel"}

// MaxExchanges bounds how many exchanges a Broker remembers the kind of:
// anyone on the broker can name exchanges in a reply_to, and a name beyond
// the bound is refused rather than kept for ever.
const MaxExchanges = 1024

// ErrNotEquivalent: an exchange is declared again with another kind (kombu
// raises NotEquivalentError).
var ErrNotEquivalent = errors.New("redistransport: exchange declared with another kind")

var _ transport.Broker = (*Broker)(nil)

// Open is the transport.Opener of kombu's Redis transport: Dial with the
// URL and the broker transport options.
func Open(ctx context.Context, url string, o transport.Options) (transport.Broker, error) {
	b, err := Dial(ctx, Config{URL: url, Logger: o.Logger, TransportOptions: o.TransportOptions})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Register registers Open for Schemes in r.
func Register(r *transport.Registry) { r.Register(Open, Schemes...) }

// Consume binds the queues to their exchanges (kombu's _kombu.binding.*
// sets) and starts consuming them, prefetch bounding the unacknowledged
// messages as Celery's prefetch count does on Redis. It is the worker's
// side of transport.Broker; NewConsumer offers every option.
func (b *Broker) Consume(ctx context.Context, queues []string, prefetch int) (transport.Consumer, error) {
	c, err := b.NewConsumer(ctx, ConsumerConfig{Queues: queues, Prefetch: prefetch})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DeclareExchange records the exchange's kind: Redis keeps no exchanges
// (kombu keeps their kinds in memory too). Publish to a fanout or topic
// exchange is pub/sub. Declaring an exchange again with another kind is
// ErrNotEquivalent; more than MaxExchanges exchanges are refused.
func (b *Broker) DeclareExchange(_ context.Context, name, kind string, _ bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if k, ok := b.kinds[name]; ok {
		if k != kind {
			return fmt.Errorf("%w: %q is %s, not %s", ErrNotEquivalent, name, k, kind)
		}
		return nil
	}
	if len(b.kinds) >= MaxExchanges {
		return fmt.Errorf("redistransport: more than %d exchanges declared; %q refused", MaxExchanges, name)
	}
	b.kinds[name] = kind
	return nil
}

// pubsub reports whether exchange travels over pub/sub: kombu's Redis
// transport turns fanout exchanges and Celery's topic event exchange into
// PUBLISH.
func (b *Broker) pubsub(exchange string) bool {
	if exchange == "" {
		return false
	}
	b.mu.Lock()
	k := b.kinds[exchange]
	b.mu.Unlock()
	return k == "fanout" || k == "topic"
}

// Subscribe binds q as kombu does and receives its messages: through
// PSUBSCRIBE for a fanout or topic exchange, from its list otherwise.
func (b *Broker) Subscribe(ctx context.Context, q transport.QueueSpec) (transport.Subscription, error) {
	if err := b.Bind(ctx, q.Exchange, q.RoutingKey, q.Name); err != nil {
		return nil, err
	}
	if q.ExchangeType == "fanout" || q.ExchangeType == "topic" {
		return b.SubscribeFanout(ctx, q.Exchange, q.RoutingKey)
	}
	s := &listSub{out: make(chan *protocol.RawMessage, transport.SubscriptionBuffer), done: make(chan struct{})}
	lctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.read(lctx, b, q.Name)
	return s, nil
}

// listSub reads a reply queue's list.
type listSub struct {
	out    chan *protocol.RawMessage
	done   chan struct{}
	cancel context.CancelFunc
	once   sync.Once
}

func (s *listSub) read(ctx context.Context, b *Broker, queue string) {
	defer close(s.done)
	defer close(s.out)
	for ctx.Err() == nil {
		m, err := b.Pop(ctx, time.Second, queue)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, ErrBadEnvelope) {
				b.log.Warn("control: reading a reply queue failed", zap.String("queue", queue), zap.Error(err))
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
			continue
		}
		if m == nil {
			continue
		}
		if len(m.Body) > transport.MaxSubscriptionMessage {
			b.log.Warn("control: reply too large; dropped", zap.String("queue", queue), zap.Int("bytes", len(m.Body)))
			continue
		}
		select {
		case s.out <- m:
		default:
			b.log.Warn("control: too many replies waiting; dropping one", zap.String("queue", queue))
		}
	}
}

func (s *listSub) Messages() <-chan *protocol.RawMessage { return s.out }

// Close ends the subscription; unread messages are dropped.
func (s *listSub) Close() error {
	s.once.Do(func() {
		s.cancel()
		go func() {
			for range s.out {
			}
		}()
		<-s.done
	})
	return nil
}

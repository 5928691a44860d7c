// Package redisops carries the operations plane (events and remote
// control) over a Redis broker through redistransport, as kombu does:
// fanout and topic exchanges (celery.pidbox, celeryev) are pub/sub, direct
// exchanges (reply.celery.pidbox) are lists found through the binding sets.
package redisops

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/control"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/redistransport"
)

// SubscriptionBuffer is how many messages of a reply queue wait for their
// reader; beyond it new ones are dropped.
const SubscriptionBuffer = 1024

// Transport is a control.Transport (and an events.Publisher with exchange
// declaration) on a redistransport.Broker.
type Transport struct {
	b   *redistransport.Broker
	log *zap.Logger

	mu    sync.Mutex
	kinds map[string]string
}

// New returns a transport on b; log may be nil.
func New(b *redistransport.Broker, log *zap.Logger) *Transport {
	if log == nil {
		log = zap.NewNop()
	}
	return &Transport{b: b, log: log, kinds: map[string]string{}}
}

// DeclareExchange records the exchange's kind; Redis keeps no exchanges
// (kombu keeps their types in memory too).
func (t *Transport) DeclareExchange(_ context.Context, name, kind string, _ bool) error {
	t.mu.Lock()
	t.kinds[name] = kind
	t.mu.Unlock()
	return nil
}

// pubsub reports whether exchange travels over pub/sub: kombu's Redis
// transport turns fanout exchanges and Celery's topic event exchange into
// PUBLISH.
func (t *Transport) pubsub(exchange string) bool {
	t.mu.Lock()
	k := t.kinds[exchange]
	t.mu.Unlock()
	return k == "fanout" || k == "topic"
}

// Publish publishes msg: PUBLISH for fanout and topic exchanges, LPUSH to
// the bound lists otherwise.
func (t *Transport) Publish(ctx context.Context, exchange, key string, msg *protocol.RawMessage) error {
	if t.pubsub(exchange) {
		return t.b.PublishFanout(ctx, exchange, key, msg)
	}
	return t.b.Publish(ctx, exchange, key, msg)
}

// Subscribe binds q as kombu does and receives its messages: through
// PSUBSCRIBE for a fanout exchange, from its list otherwise.
func (t *Transport) Subscribe(ctx context.Context, q control.QueueSpec) (control.Subscription, error) {
	if err := t.b.Bind(ctx, q.Exchange, q.RoutingKey, q.Name); err != nil {
		return nil, err
	}
	if q.ExchangeType == "fanout" || q.ExchangeType == "topic" {
		return t.b.Subscribe(ctx, q.Exchange, q.RoutingKey)
	}
	s := &listSub{out: make(chan *protocol.RawMessage, SubscriptionBuffer), done: make(chan struct{})}
	lctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		defer close(s.done)
		defer close(s.out)
		for lctx.Err() == nil {
			m, err := t.b.Pop(lctx, time.Second, q.Name)
			if err != nil {
				if lctx.Err() == nil && !errors.Is(err, redistransport.ErrBadEnvelope) {
					t.log.Warn("control: reading a reply queue failed", zap.String("queue", q.Name), zap.Error(err))
					select {
					case <-lctx.Done():
					case <-time.After(time.Second):
					}
				}
				continue
			}
			if m == nil {
				continue
			}
			select {
			case s.out <- m:
			default:
				t.log.Warn("control: too many replies waiting; dropping one", zap.String("queue", q.Name))
			}
		}
	}()
	return s, nil
}

type listSub struct {
	out    chan *protocol.RawMessage
	done   chan struct{}
	cancel context.CancelFunc
	once   sync.Once
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

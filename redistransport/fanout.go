package redistransport

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/transport"
)

// FanoutChannel is the pub/sub channel kombu uses for a message to a fanout
// exchange (events, the pidbox broadcast): "/<db>.<exchange>", or
// "/<db>.<exchange>/<routing key>" when there is a routing key
// (fanout_patterns), with global_keyprefix in front.
func (b *Broker) FanoutChannel(exchange, routingKey string) string {
	ch := "/" + strconv.Itoa(b.db) + "." + exchange
	if routingKey != "" {
		ch += "/" + routingKey
	}
	return b.key(ch)
}

// PublishFanout publishes msg to a fanout exchange as kombu does on Redis
// (PUBLISH of the envelope). As with kombu, a message nobody is subscribed
// to is lost.
func (b *Broker) PublishFanout(ctx context.Context, exchange, routingKey string, msg *protocol.RawMessage) error {
	if b.isClosed() {
		return ErrClosed
	}
	env, err := encodeEnvelope(msg, exchange, routingKey, newTag())
	if err != nil {
		return err
	}
	ch := b.FanoutChannel(exchange, routingKey)
	return b.retry(ctx, func(ctx context.Context) error { return b.client.Publish(ctx, ch, env).Err() })
}

// Subscription receives the messages of a fanout exchange. Create it with
// Broker.SubscribeFanout.
type Subscription struct {
	ps   *redis.PubSub
	out  chan *protocol.RawMessage
	done chan struct{}
	once sync.Once
}

// SubscribeFanout receives what is published to exchange with routing keys
// matching bindingKeys, as a kombu consumer of a queue bound to the fanout
// exchange does: PSUBSCRIBE to the channel of each binding key with "#"
// written "*"; no binding key means every message of the exchange without a
// routing key. go-redis subscribes again after a reconnection; messages
// published meanwhile are lost, as with kombu.
func (b *Broker) SubscribeFanout(ctx context.Context, exchange string, bindingKeys ...string) (*Subscription, error) {
	if len(bindingKeys) == 0 {
		bindingKeys = []string{""}
	}
	patterns := make([]string, len(bindingKeys))
	for i, k := range bindingKeys {
		patterns[i] = b.FanoutChannel(exchange, strings.ReplaceAll(k, "#", "*"))
	}
	ps := b.client.PSubscribe(ctx, patterns...)
	if _, err := ps.Receive(ctx); err != nil {
		_ = ps.Close()
		return nil, err
	}
	s := &Subscription{ps: ps, out: make(chan *protocol.RawMessage), done: make(chan struct{})}
	log := b.log.With(zap.String("exchange", exchange))
	go func() {
		defer close(s.out)
		for m := range ps.Channel() {
			if len(m.Payload) > 2*transport.MaxSubscriptionMessage { // base64 and the envelope
				log.Warn("message too large on a fanout channel dropped", zap.String("channel", m.Channel), zap.Int("bytes", len(m.Payload)))
				continue
			}
			env, err := decodeEnvelope([]byte(m.Payload))
			if err != nil {
				log.Warn("bad message on a fanout channel dropped", zap.String("channel", m.Channel), zap.Error(err))
				continue
			}
			select {
			case s.out <- &env.raw:
			case <-s.done:
				return
			}
		}
	}()
	return s, nil
}

// Messages is closed after Close.
func (s *Subscription) Messages() <-chan *protocol.RawMessage { return s.out }

// Close ends the subscription.
func (s *Subscription) Close() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		err = s.ps.Close()
	})
	return err
}

// FanoutPublisher publishes every message as a fanout one (PublishFanout),
// for publishers written against a Publish method, such as an event
// dispatcher: on Redis, kombu turns the celeryev exchange into a fanout.
type FanoutPublisher struct{ B *Broker }

// Publish is B.PublishFanout.
func (f FanoutPublisher) Publish(ctx context.Context, exchange, routingKey string, msg *protocol.RawMessage) error {
	return f.B.PublishFanout(ctx, exchange, routingKey, msg)
}

// Pop takes one message from queue (its lists in priority order) without
// the unacked bookkeeping, as a kombu consumer with no_ack does; it waits
// up to timeout and returns nil, nil when nothing came. For reply queues.
func (b *Broker) Pop(ctx context.Context, timeout time.Duration, queue string) (*protocol.RawMessage, error) {
	keys := make([]string, len(b.cfg.PrioritySteps))
	for i, s := range b.cfg.PrioritySteps {
		keys[i] = b.key(b.QueueKey(queue, s))
	}
	kv, err := b.client.BRPop(ctx, timeout, keys...).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	env, err := decodeEnvelope([]byte(kv[1]))
	if err != nil {
		return nil, err
	}
	return &env.raw, nil
}

package amqptransport

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
)

// PublishOptions are per-publish options; nil means the defaults.
type PublishOptions struct {
	// Mandatory asks the broker to return the message when no queue
	// matches; Publish then fails with a *ReturnError (ErrReturned).
	// Without it RabbitMQ confirms and drops unroutable messages.
	Mandatory bool
	// Due is when the message is due (its eta); zero means now. See
	// PublishDelayed.
	Due time.Time
}

// Publish publishes msg with publisher confirms and waits for the broker's
// confirmation of this message. It is safe for concurrent use; concurrent
// publishes share one channel in confirm mode and wait for their confirms
// in parallel, so throughput grows with the number of publishing
// goroutines.
//
// Properties are mapped from msg: content type and encoding, delivery mode,
// priority (only when HasPriority), correlation id, reply-to, expiration and
// headers (converted as HeadersToAMQP describes). A nack gives ErrNacked.
// When the connection or channel breaks before the confirm, Publish waits
// for the reconnection and publishes again, until ctx ends: a message may
// then reach the queue twice, as with any at-least-once publisher. A
// channel error caused by the message itself (unknown exchange, message too
// large) is returned as an error wrapping *amqp.Error.
//
// ctx bounds the whole call. While the broker blocks publishers (resource
// alarm) Publish waits without writing, so that it can still honour ctx.
func (b *Broker) Publish(ctx context.Context, exchange, routingKey string, msg *protocol.RawMessage) error {
	return b.PublishWithOptions(ctx, exchange, routingKey, msg, nil)
}

// PublishDelayed publishes msg as Publish does; due is when it is due (its
// eta). When it is due in a second or more and goes to a quorum queue
// bound to a topic or fanout exchange, it is routed through the levels of
// native delayed delivery (see the package documentation), as Celery 5.5
// sends countdown and ETA tasks to quorum queues, so that the broker holds
// it instead of a worker; the topology is declared, and the queue bound,
// on the publishing connection's node first. A message that was delivered
// through that topology is routed through it again, with a new delay
// prefix in place of its old one. Otherwise it goes where it was sent, and
// the worker that takes it holds it until it is due (as it does a message
// that arrives up to a second early through the levels).
func (b *Broker) PublishDelayed(ctx context.Context, exchange, routingKey string, msg *protocol.RawMessage, due time.Time) error {
	return b.PublishWithOptions(ctx, exchange, routingKey, msg, &PublishOptions{Due: due})
}

// PublishWithOptions is Publish with options.
//
// Publishing never sends the headers RabbitMQ adds when it dead-letters a
// message (x-death, x-first-death-*, x-last-death-*): a message published
// again with them can be dropped by the broker's dead-letter cycle
// detection. A message published to an exchange of the delayed delivery
// topology (a task retried where it was delivered from) goes through
// PublishDelayed's routing too, so it does not wait again at the level it
// came from.
func (b *Broker) PublishWithOptions(ctx context.Context, exchange, routingKey string, msg *protocol.RawMessage, opts *PublishOptions) error {
	if len(exchange) > 255 || len(routingKey) > 255 {
		return fmt.Errorf("%w: exchange or routing key longer than 255 bytes", ErrInvalidMessage)
	}
	p, err := publishingFromRaw(withoutDeathHeaders(msg))
	if err != nil {
		return err
	}
	var o PublishOptions
	if opts != nil {
		o = *opts
	}
	pub, err := b.publisher()
	if err != nil {
		return err
	}
	exchange, routingKey = b.delayRoute(ctx, pub, exchange, routingKey, o.Due)
	if len(routingKey) > 255 {
		return fmt.Errorf("%w: routing key with its delay prefix longer than 255 bytes", ErrInvalidMessage)
	}
	return pub.publish(ctx, exchange, routingKey, o.Mandatory, p)
}

func (b *Broker) publisher() (*publisher, error) {
	b.pubOnce.Do(func() {
		if b.isClosed() {
			return
		}
		b.pubConn = newConnManager(b.cfg, b.eps, b.cfg.ConnectionName+" (publisher)",
			b.log.With(zap.String("connection", "publisher")))
		b.pubConn.startLazy()
		b.pub = &publisher{m: b.pubConn, log: b.log.Named("publisher"), seed: maphash.MakeSeed()}
	})
	if b.pub == nil || b.isClosed() {
		return nil, ErrClosed
	}
	return b.pub, nil
}

// publisher owns the confirm-mode channel of the publishing connection.
type publisher struct {
	m    *connManager
	log  *zap.Logger
	seed maphash.Seed

	open   sync.Mutex // serializes channel opening
	mu     sync.Mutex
	cur    *pubChan
	closed bool

	// dmu guards what ensureDelay did on the connection of epoch dEpoch:
	// the delayed delivery topology declared, the queues bound.
	dmu       sync.Mutex
	dEpoch    uint64
	dTopology bool
	dBound    map[string]bool
}

// pubChan is one confirm-mode channel. A single goroutine reads both the
// returns and the confirms of the channel: amqp091-go dispatches a
// basic.return before the confirm of the same message, so draining the
// returns before resolving each confirm matches every return to its
// publish without a race.
type pubChan struct {
	ch     *amqp.Channel
	sess   *session
	closed chan struct{}
	err    *amqp.Error // set before closed is closed

	mu      sync.Mutex // serializes sends; guards the fields below
	seq     uint64
	waiters map[uint64]*waiter
	byFP    map[uint64][]*waiter // mandatory publishes by fingerprint
}

type waiter struct {
	seq       uint64
	fp        uint64
	mandatory bool
	done      chan struct{}
	acked     bool
	lost      bool // the channel closed before the confirm
	returned  *amqp.Return
}

func (pc *pubChan) isClosed() bool {
	select {
	case <-pc.closed:
		return true
	default:
		return false
	}
}

// closesSoon reports whether the channel closes shortly: after a socket
// write error amqp091-go returns the I/O error and shuts the connection down
// asynchronously.
func (pc *pubChan) closesSoon() bool {
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-pc.closed:
		return true
	case <-t.C:
		return false
	}
}

func (p *publisher) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}

// channel returns the live confirm channel, opening one when needed.
func (p *publisher) channel(ctx context.Context) (*pubChan, error) {
	p.open.Lock()
	defer p.open.Unlock()
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		if pc := p.cur; pc != nil && !pc.isClosed() && !pc.sess.isClosed() {
			p.mu.Unlock()
			return pc, nil
		}
		p.cur = nil
		p.mu.Unlock()

		s, err := p.m.get(ctx)
		if err != nil {
			return nil, err
		}
		pc, err := p.openChannel(ctx, s)
		if err != nil {
			if s.isClosed() {
				continue
			}
			return nil, err
		}
		p.mu.Lock()
		p.cur = pc
		p.mu.Unlock()
		return pc, nil
	}
}

func (p *publisher) openChannel(ctx context.Context, s *session) (*pubChan, error) {
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("amqptransport: open publishing channel: %w", err)
	}
	if err := withContext(ctx, ch, func() error { return ch.Confirm(false) }); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("amqptransport: enable publisher confirms: %w", err)
	}
	pc := &pubChan{
		ch: ch, sess: s,
		closed:  make(chan struct{}),
		waiters: make(map[uint64]*waiter),
		byFP:    make(map[uint64][]*waiter),
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, 64))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 256))
	notify := ch.NotifyClose(make(chan *amqp.Error, 1))
	go func() {
		e := <-notify
		pc.err = e
		close(pc.closed)
		if e != nil {
			p.log.Warn("publishing channel closed", zap.Int("code", e.Code), zap.String("reason", e.Reason))
		}
	}()
	go pc.dispatch(p.seed, returns, confirms)
	return pc, nil
}

func (pc *pubChan) dispatch(seed maphash.Seed, returns <-chan amqp.Return, confirms <-chan amqp.Confirmation) {
	drain := func() {
		for returns != nil {
			select {
			case r, ok := <-returns:
				if !ok {
					returns = nil
					return
				}
				pc.onReturn(seed, r)
			default:
				return
			}
		}
	}
	for {
		select {
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			pc.onReturn(seed, r)
		case c, ok := <-confirms:
			drain()
			if !ok {
				<-pc.closed
				pc.failAll()
				return
			}
			pc.onConfirm(c)
		}
	}
}

func (pc *pubChan) onReturn(seed maphash.Seed, r amqp.Return) {
	fp := fingerprint(seed, r.Exchange, r.RoutingKey, r.CorrelationId, r.Body)
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for _, w := range pc.byFP[fp] {
		if w.returned == nil {
			rr := r
			rr.Body = nil
			w.returned = &rr
			return
		}
	}
}

func (pc *pubChan) onConfirm(c amqp.Confirmation) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	w := pc.waiters[c.DeliveryTag]
	if w == nil {
		return
	}
	w.acked = c.Ack
	pc.resolveLocked(w)
}

func (pc *pubChan) resolveLocked(w *waiter) {
	delete(pc.waiters, w.seq)
	if w.mandatory {
		list := pc.byFP[w.fp]
		for i, x := range list {
			if x == w {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(pc.byFP, w.fp)
		} else {
			pc.byFP[w.fp] = list
		}
	}
	close(w.done)
}

func (pc *pubChan) failAll() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for _, w := range pc.waiters {
		w.lost = true
		pc.resolveLocked(w)
	}
}

func fingerprint(seed maphash.Seed, exchange, key, corrID string, body []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	h.WriteString(exchange)
	h.WriteByte(0)
	h.WriteString(key)
	h.WriteByte(0)
	h.WriteString(corrID)
	h.WriteByte(0)
	h.Write(body)
	return h.Sum64()
}

func (p *publisher) publish(ctx context.Context, exchange, key string, mandatory bool, msg amqp.Publishing) error {
	channelErrors := 0
	var fp uint64
	if mandatory {
		fp = fingerprint(p.seed, exchange, key, msg.CorrelationId, msg.Body)
	}
	for {
		if ctx.Err() != nil {
			return fmt.Errorf("amqptransport: publish: %w", context.Cause(ctx))
		}
		pc, err := p.channel(ctx)
		if err != nil {
			return err
		}
		if err := pc.sess.waitUnblocked(ctx); err != nil {
			return err
		}
		w, err := pc.send(ctx, exchange, key, mandatory, fp, msg)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("amqptransport: publish: %w", context.Cause(ctx))
			}
			if !pc.ch.IsClosed() && !errors.Is(err, amqp.ErrClosed) && !pc.closesSoon() {
				return fmt.Errorf("amqptransport: publish: %w", err)
			}
		} else {
			select {
			case <-w.done:
			case <-ctx.Done():
				return fmt.Errorf("amqptransport: waiting for the publish confirm: %w", context.Cause(ctx))
			}
			if !w.lost {
				if !w.acked {
					return ErrNacked
				}
				if w.returned != nil {
					return &ReturnError{Code: w.returned.ReplyCode, Text: w.returned.ReplyText,
						Exchange: exchange, RoutingKey: key}
				}
				return nil
			}
		}
		// The channel died before the confirm.
		<-pc.closed
		if pc.err != nil && !isConnectionLevel(pc.err) && !pc.sess.isClosed() {
			channelErrors++
			if channelErrors > 1 {
				return fmt.Errorf("amqptransport: publish to exchange %q: %w", exchange, pc.err)
			}
		}
		p.log.Debug("publish interrupted by a channel or connection loss; publishing again",
			zap.String("exchange", exchange), zap.String("routing_key", key))
	}
}

// send publishes one message and registers its waiter under the same lock,
// so sequence numbers match the broker's delivery tags.
func (pc *pubChan) send(ctx context.Context, exchange, key string, mandatory bool, fp uint64, msg amqp.Publishing) (*waiter, error) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	w := &waiter{seq: pc.seq + 1, fp: fp, mandatory: mandatory, done: make(chan struct{})}
	if err := pc.ch.Publish(exchange, key, mandatory, false, msg); err != nil {
		return nil, err
	}
	pc.seq++
	pc.waiters[w.seq] = w
	if mandatory {
		pc.byFP[fp] = append(pc.byFP[fp], w)
	}
	return w, nil
}

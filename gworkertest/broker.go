package gworkertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

// Errors of the in-memory broker. They are wrapped with details; test with
// errors.Is.
var (
	// ErrClosed: the broker was closed.
	ErrClosed = errors.New("gworkertest: broker closed")
	// ErrNoExchange: a message was published to an exchange that was never
	// declared (RabbitMQ closes the channel with 404 NOT_FOUND).
	ErrNoExchange = errors.New("gworkertest: no such exchange")
	// ErrNoQueue: a queue that was never declared.
	ErrNoQueue = errors.New("gworkertest: no such queue")
	// ErrUnroutable: the message routes to no queue. RabbitMQ drops such a
	// message silently; the in-memory broker refuses it so that a test
	// cannot lose a message without noticing.
	ErrUnroutable = errors.New("gworkertest: message routes to no queue")
	// ErrSettled: a delivery was acknowledged or rejected twice (RabbitMQ
	// closes the channel with PRECONDITION_FAILED "unknown delivery tag").
	ErrSettled = errors.New("gworkertest: delivery already acknowledged or rejected")
	// ErrConsumerClosed: a delivery of a consumer that was closed; its
	// message went back to the queue when the consumer closed.
	ErrConsumerClosed = errors.New("gworkertest: consumer closed")
)

// Reasons a message is dead-lettered.
const (
	// ReasonRejected: rejected with requeue=false.
	ReasonRejected = "rejected"
	// ReasonExpired: its per-message TTL (the expiration property) passed
	// while it waited in the queue.
	ReasonExpired = "expired"
)

// DeadLetter is a message the broker took out of a queue without
// delivering it again: rejected without requeue, or expired.
type DeadLetter struct {
	Queue  string
	Reason string
	// Raw is the message with its last delivery information.
	Raw protocol.RawMessage
}

// QueueStats counts a queue's messages.
type QueueStats struct {
	// Ready is the number of messages waiting to be delivered (what
	// RabbitMQ reports as the queue's message count).
	Ready int
	// Unacked is the number of messages delivered and not yet acknowledged
	// or rejected.
	Unacked int
}

// Broker is an in-memory message broker with RabbitMQ's semantics for what
// gworker uses: durable queues, the default exchange (routing key = queue
// name) and direct exchanges, consumers with a prefetch bound on
// unacknowledged messages, acknowledgement, rejection with or without
// requeue, per-message TTL, and unacknowledged messages returned to their
// queue, in their original order and marked redelivered, when their
// consumer closes.
//
// It is a worker.Broker (the worker consumes from it), a producer.Publisher
// and a producer.Declarer (producer.New and canvas publish to it). Messages
// rejected without requeue or expired are kept in DeadLetters for tests to
// inspect. A Broker is safe for concurrent use; the zero value is not
// usable, call NewBroker.
type Broker struct {
	mu        sync.Mutex
	queues    map[string]*memQueue
	exchanges map[string]map[string][]string // exchange -> routing key -> queues
	consumers map[*consumer]struct{}
	dead      []DeadLetter
	seq       uint64
	closed    bool
	changed   chan struct{} // closed and replaced on every change
	now       func() time.Time
}

var (
	_ worker.Broker      = (*Broker)(nil)
	_ producer.Publisher = (*Broker)(nil)
	_ producer.Declarer  = (*Broker)(nil)
)

type memQueue struct {
	name  string
	ready []*message // ordered by seq
}

type message struct {
	seq         uint64
	queue       string
	raw         protocol.RawMessage // as published, with Exchange and RoutingKey
	expires     time.Time           // zero: no TTL
	redelivered bool
	deliveries  int // how many times it was handed to a consumer
}

// NewBroker returns an empty broker.
func NewBroker() *Broker {
	return &Broker{
		queues:    map[string]*memQueue{},
		exchanges: map[string]map[string][]string{},
		consumers: map[*consumer]struct{}{},
		changed:   make(chan struct{}),
		now:       time.Now,
	}
}

// DeclareQueue declares a queue reachable through the default exchange
// under its name. Declaring an existing queue is a no-op.
func (b *Broker) DeclareQueue(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	b.declareLocked(name)
	return nil
}

// DeclareTaskQueue declares a task queue as kombu does: a queue and a
// direct exchange both named name, bound with routing key name.
func (b *Broker) DeclareTaskQueue(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	b.declareTaskLocked(name)
	return nil
}

// Bind routes messages published to the direct exchange with routingKey to
// queue, declaring the exchange if needed. The queue must exist.
func (b *Broker) Bind(ctx context.Context, exchange, routingKey, queue string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if exchange == "" {
		return fmt.Errorf("gworkertest: the default exchange cannot be bound")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if b.queues[queue] == nil {
		return fmt.Errorf("%w: %q", ErrNoQueue, queue)
	}
	b.bindLocked(exchange, routingKey, queue)
	return nil
}

func (b *Broker) declareLocked(name string) {
	if b.queues[name] == nil {
		b.queues[name] = &memQueue{name: name}
	}
}

func (b *Broker) declareTaskLocked(name string) {
	b.declareLocked(name)
	b.bindLocked(name, name, name)
}

func (b *Broker) bindLocked(exchange, key, queue string) {
	keys := b.exchanges[exchange]
	if keys == nil {
		keys = map[string][]string{}
		b.exchanges[exchange] = keys
	}
	if !slices.Contains(keys[key], queue) {
		keys[key] = append(keys[key], queue)
	}
}

// Publish routes a copy of msg to the queues its exchange and routing key
// select: through the default exchange "" to the queue named routingKey,
// through a direct exchange to the queues bound with routingKey. A message
// that reaches no queue is refused with ErrUnroutable.
func (b *Broker) Publish(ctx context.Context, exchange, routingKey string, msg *protocol.RawMessage) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if msg == nil {
		return errors.New("gworkertest: nil message")
	}
	var ttl time.Duration
	hasTTL := msg.Expiration != ""
	if hasTTL {
		ms, err := strconv.ParseInt(msg.Expiration, 10, 64)
		if err != nil || ms < 0 {
			// RabbitMQ refuses the publish: PRECONDITION_FAILED.
			return fmt.Errorf("gworkertest: invalid expiration %q", msg.Expiration)
		}
		ttl = time.Duration(ms) * time.Millisecond
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	var targets []string
	if exchange == "" {
		if b.queues[routingKey] != nil {
			targets = []string{routingKey}
		}
	} else {
		keys, ok := b.exchanges[exchange]
		if !ok {
			return fmt.Errorf("%w: %q", ErrNoExchange, exchange)
		}
		targets = keys[routingKey]
	}
	if len(targets) == 0 {
		return fmt.Errorf("%w: exchange %q, routing key %q", ErrUnroutable, exchange, routingKey)
	}
	now := b.now()
	for _, name := range targets {
		b.seq++
		m := &message{seq: b.seq, queue: name, raw: copyRaw(msg)}
		m.raw.Exchange, m.raw.RoutingKey, m.raw.Redelivered = exchange, routingKey, false
		if hasTTL {
			m.expires = now.Add(ttl)
		}
		q := b.queues[name]
		q.ready = append(q.ready, m)
	}
	b.wakeLocked()
	return nil
}

// Consume declares queues as task queues (as kombu does when a worker
// starts) and starts a consumer of them. prefetch bounds the messages it
// holds unacknowledged (0: no bound), across all its queues, as RabbitMQ's
// global QoS does.
func (b *Broker) Consume(ctx context.Context, queues []string, prefetch int) (worker.Consumer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(queues) == 0 {
		return nil, errors.New("gworkertest: no queue to consume")
	}
	if prefetch < 0 {
		return nil, fmt.Errorf("gworkertest: negative prefetch %d", prefetch)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	for _, q := range queues {
		b.declareTaskLocked(q)
	}
	c := &consumer{
		b:        b,
		queues:   slices.Clone(queues),
		prefetch: prefetch,
		unacked:  map[*Delivery]struct{}{},
		out:      make(chan worker.Delivery),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	b.consumers[c] = struct{}{}
	go c.loop()
	return c, nil
}

// Close closes every consumer (their unacknowledged messages go back to
// their queues and their deliveries channels close, as when the connection
// to RabbitMQ is lost) and refuses further use. The messages stay
// inspectable. Close is idempotent.
func (b *Broker) Close() error {
	b.mu.Lock()
	b.closed = true
	cs := make([]*consumer, 0, len(b.consumers))
	for c := range b.consumers {
		cs = append(cs, c)
	}
	b.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
	return nil
}

// Stats returns the counts of a queue.
func (b *Broker) Stats(queue string) (QueueStats, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queues[queue]
	if q == nil {
		return QueueStats{}, fmt.Errorf("%w: %q", ErrNoQueue, queue)
	}
	b.expireLocked(q)
	st := QueueStats{Ready: len(q.ready)}
	for c := range b.consumers {
		for d := range c.unacked {
			if d.m.queue == queue {
				st.Unacked++
			}
		}
	}
	return st, nil
}

// Messages returns copies of the messages ready in queue, in delivery
// order.
func (b *Broker) Messages(queue string) ([]protocol.RawMessage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queues[queue]
	if q == nil {
		return nil, fmt.Errorf("%w: %q", ErrNoQueue, queue)
	}
	b.expireLocked(q)
	out := make([]protocol.RawMessage, len(q.ready))
	for i, m := range q.ready {
		out[i] = copyRaw(&m.raw)
		out[i].Redelivered = m.redelivered
	}
	return out, nil
}

// Purge removes the ready messages of queue and returns how many there
// were.
func (b *Broker) Purge(queue string) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queues[queue]
	if q == nil {
		return 0, fmt.Errorf("%w: %q", ErrNoQueue, queue)
	}
	n := len(q.ready)
	q.ready = nil
	return n, nil
}

// DeadLetters returns the messages rejected without requeue or expired,
// oldest first.
func (b *Broker) DeadLetters() []DeadLetter {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, q := range b.queues {
		b.expireLocked(q)
	}
	out := make([]DeadLetter, len(b.dead))
	for i, d := range b.dead {
		out[i] = DeadLetter{Queue: d.Queue, Reason: d.Reason, Raw: copyRaw(&d.Raw)}
	}
	return out
}

// expireLocked dead-letters the expired messages at the head of q, where
// RabbitMQ expires them.
func (b *Broker) expireLocked(q *memQueue) {
	now := b.now()
	for len(q.ready) > 0 {
		m := q.ready[0]
		if m.expires.IsZero() || now.Before(m.expires) {
			return
		}
		q.ready = q.ready[1:]
		raw := m.raw
		raw.Redelivered = m.redelivered
		b.dead = append(b.dead, DeadLetter{Queue: q.name, Reason: ReasonExpired, Raw: raw})
	}
}

// requeueLocked puts m back in its queue at its original position.
func (b *Broker) requeueLocked(m *message, redelivered bool) {
	q := b.queues[m.queue]
	if q == nil {
		return
	}
	m.redelivered = m.redelivered || redelivered
	i := sort.Search(len(q.ready), func(i int) bool { return q.ready[i].seq > m.seq })
	q.ready = slices.Insert(q.ready, i, m)
}

// wakeLocked tells every consumer and waiter that something changed.
func (b *Broker) wakeLocked() {
	for c := range b.consumers {
		c.poke()
	}
	close(b.changed)
	b.changed = make(chan struct{})
}

// WaitEmpty waits until queue has no message ready and none
// unacknowledged: every message published to it was acknowledged,
// rejected or expired. It returns ctx's error if ctx ends first. A
// message whose TTL passes while nothing else happens is noticed at the
// next publish, acknowledgement or rejection.
func (b *Broker) WaitEmpty(ctx context.Context, queue string) error {
	for {
		// Take the change signal before looking, so that a change made
		// after the look wakes the wait.
		b.mu.Lock()
		ch := b.changed
		b.mu.Unlock()
		st, err := b.Stats(queue)
		if err != nil {
			return err
		}
		if st.Ready == 0 && st.Unacked == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// consumer is one consumption of a set of queues.
type consumer struct {
	b        *Broker
	queues   []string
	next     int // round robin over queues
	prefetch int
	unacked  map[*Delivery]struct{}
	stopped  bool // no more deliveries (guarded by b.mu)
	closed   bool // unacknowledged messages returned (guarded by b.mu)

	out  chan worker.Delivery
	wake chan struct{}
	stop chan struct{} // closed when stopped is set
	done chan struct{} // closed when loop has returned and out is closed
}

func (c *consumer) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *consumer) Deliveries() <-chan worker.Delivery { return c.out }

// loop hands messages to the deliveries channel while the prefetch window
// allows.
func (c *consumer) loop() {
	defer close(c.done)
	defer close(c.out)
	for {
		c.b.mu.Lock()
		if c.stopped {
			c.b.mu.Unlock()
			return
		}
		d := c.takeLocked()
		c.b.mu.Unlock()
		if d == nil {
			select {
			case <-c.wake:
			case <-c.stop:
			}
			continue
		}
		select {
		case c.out <- d:
		case <-c.stop:
			// Never handed over: back to the queue as it was.
			c.b.mu.Lock()
			if !d.settled {
				d.settled = true
				d.m.deliveries--
				delete(c.unacked, d)
				c.b.requeueLocked(d.m, false)
				c.b.wakeLocked()
			}
			c.b.mu.Unlock()
			return
		}
	}
}

// takeLocked removes the next message from the consumer's queues, or
// returns nil when there is none or the prefetch window is full.
func (c *consumer) takeLocked() *Delivery {
	if c.prefetch > 0 && len(c.unacked) >= c.prefetch {
		return nil
	}
	for i := range c.queues {
		k := (c.next + i) % len(c.queues)
		q := c.b.queues[c.queues[k]]
		if q == nil {
			continue
		}
		c.b.expireLocked(q)
		if len(q.ready) == 0 {
			continue
		}
		m := q.ready[0]
		q.ready = q.ready[1:]
		c.next = (k + 1) % len(c.queues)
		d := &Delivery{c: c, m: m, raw: copyRaw(&m.raw), count: m.deliveries}
		m.deliveries++
		d.raw.Redelivered = m.redelivered
		c.unacked[d] = struct{}{}
		return d
	}
	return nil
}

// SetPrefetch changes the bound on unacknowledged messages (0: none).
func (c *consumer) SetPrefetch(n int) error {
	if n < 0 {
		return fmt.Errorf("gworkertest: negative prefetch %d", n)
	}
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	if c.closed {
		return ErrConsumerClosed
	}
	c.prefetch = n
	c.poke()
	return nil
}

func (c *consumer) stopLocked() {
	if !c.stopped {
		c.stopped = true
		close(c.stop)
	}
}

// Cancel stops deliveries; the deliveries channel closes once the consumer
// has stopped. Deliveries already handed out stay valid.
func (c *consumer) Cancel(ctx context.Context) error {
	c.b.mu.Lock()
	c.stopLocked()
	c.b.mu.Unlock()
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops deliveries and returns every unacknowledged message to its
// queue, marked redelivered. Acknowledging one of its deliveries afterwards
// fails with ErrConsumerClosed.
func (c *consumer) Close() error {
	c.b.mu.Lock()
	c.stopLocked()
	c.b.mu.Unlock()
	<-c.done
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	for d := range c.unacked {
		d.settled, d.returned = true, true
		c.b.requeueLocked(d.m, true)
	}
	clear(c.unacked)
	delete(c.b.consumers, c)
	c.b.wakeLocked()
	return nil
}

// Delivery is one message handed to a consumer of the in-memory broker.
type Delivery struct {
	c        *consumer
	m        *message
	raw      protocol.RawMessage
	settled  bool // guarded by c.b.mu
	returned bool // given back by Close (guarded by c.b.mu)
	count    int  // deliveries before this one
}

var (
	_ worker.Delivery        = (*Delivery)(nil)
	_ worker.DeliveryCounter = (*Delivery)(nil)
)

// DeliveryCount returns how many times the message was delivered before
// this delivery, as RabbitMQ's quorum queues count it (x-delivery-count):
// every requeue counts, by a rejection or a closed consumer.
func (d *Delivery) DeliveryCount() (int, bool) { return d.count, true }

// Raw returns the message with its delivery information.
func (d *Delivery) Raw() *protocol.RawMessage { return &d.raw }

// ConsumedFrom returns the queue the message came from.
func (d *Delivery) ConsumedFrom() string { return d.m.queue }

// Ack acknowledges the message: it leaves the broker.
func (d *Delivery) Ack() error {
	return d.settle(func() {})
}

// Reject rejects the message: requeue puts it back in its queue at its
// original position, marked redelivered; otherwise it is dead-lettered
// (see Broker.DeadLetters).
func (d *Delivery) Reject(requeue bool) error {
	return d.settle(func() {
		b := d.c.b
		if requeue {
			b.requeueLocked(d.m, true)
			return
		}
		raw := d.m.raw
		raw.Redelivered = d.raw.Redelivered
		b.dead = append(b.dead, DeadLetter{Queue: d.m.queue, Reason: ReasonRejected, Raw: raw})
	})
}

func (d *Delivery) settle(fn func()) error {
	b := d.c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if d.returned {
		return ErrConsumerClosed
	}
	if d.settled {
		return ErrSettled
	}
	d.settled = true
	delete(d.c.unacked, d)
	fn()
	b.wakeLocked()
	return nil
}

// copyRaw copies a message deeply enough that neither side sees the
// other's changes, as if it had crossed a network.
func copyRaw(m *protocol.RawMessage) protocol.RawMessage {
	c := *m
	if m.Body != nil {
		c.Body = slices.Clone(m.Body)
	}
	if m.Headers != nil {
		c.Headers = copyValue(m.Headers).(map[string]any)
	}
	return c
}

func copyValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = copyValue(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = copyValue(e)
		}
		return out
	case []byte:
		return slices.Clone(x)
	default:
		return v
	}
}

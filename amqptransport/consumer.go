package amqptransport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/transport"
)

// MaxPrefetch is the largest prefetch count AMQP can express.
const MaxPrefetch = 65535

// ConsumerConfig configures NewConsumer.
type ConsumerConfig struct {
	// Queues to consume from, all on one channel. They are declared (with
	// their exchanges and bindings) before consuming, and again after every
	// reconnect, unless NoDeclare is set. Consumer.AddQueue and
	// Consumer.CancelQueue change the consumer's own list; this slice is not
	// modified.
	Queues []Queue
	// NoDeclare skips declarations: the queues must exist (a reply queue
	// created by its client, for instance).
	NoDeclare bool
	// DelayedDelivery sets up native delayed delivery, as Celery 5.5's
	// DelayedDelivery bootstep, when one of the queues is a quorum queue:
	// the celery_delayed_* topology is declared and every queue bound to
	// it through its exchange (topic and fanout exchanges; direct ones are
	// skipped with a warning), over the consumer's connection each time it
	// opens, and on every other URL of the failover list in the
	// background. A failure is logged and retried, never returned. Task
	// consumers use it (Broker.Consume); ignored with NoDeclare.
	DelayedDelivery bool

	// Prefetch is the initial prefetch count (basic.qos); 0 means no
	// limit. Celery uses worker_prefetch_multiplier (4) × concurrency.
	Prefetch int
	// GlobalQoS applies the prefetch count to the whole channel
	// (basic.qos global=true), which is what Celery does on RabbitMQ and
	// what makes SetPrefetch take effect on running consumers. Quorum
	// queues refuse global QoS (RabbitMQ closes the connection), so, as
	// Celery 5.5's worker_detect_quorum_queues, GlobalQoS is only a
	// preference: when a consumed queue is a quorum queue, or an existing
	// queue whose type the broker did not tell, the consumer uses
	// per-consumer QoS.
	//
	// With per-consumer QoS RabbitMQ applies a count only to consumers
	// started after it, so a prefetch change (SetPrefetch, AddPrefetch)
	// that moves the window by at least a quarter (or by one for small
	// windows) restarts the consumers on the same channel: basic.cancel
	// and basic.consume again with a count of the window minus the
	// deliveries still unsettled from the earlier consumers. Deliveries
	// stay valid across such a restart (nothing is requeued), and as the
	// earlier consumers' deliveries are settled the window is topped up
	// the same way. Each queue's consumer gets the count, so a channel
	// consuming several queues may hold that many per queue, as kombu's
	// consumers do with per-consumer QoS; that includes queues added with
	// AddQueue.
	GlobalQoS bool

	// ConsumerTag is the prefix of the consumer tags; empty means
	// "gworker". Tags are made unique per channel and queue.
	ConsumerTag string

	// NoAck consumes in auto-acknowledge mode: the broker forgets each
	// message as it sends it, and Ack/Reject return ErrNoAck. For reply
	// queues only; never for tasks.
	NoAck bool
	// Exclusive asks for exclusive consumers (basic.consume exclusive).
	Exclusive bool
	// BatchAcks lets acknowledgements made at about the same time share
	// one write: Ack records the delivery and returns, and whichever Ack
	// is writing sends the settled prefix of delivery tags as one
	// basic.ack with multiple=true (acknowledgements after a message still
	// outstanding are sent singly, in the same pass, so a held message
	// delays nothing). A lone Ack is written at once, before it returns;
	// under load an Ack may return before its frame is written, and Close
	// writes every recorded acknowledgement before closing the channel.
	// Ack then reports a write failure of an earlier batch on that channel
	// as ErrStaleDelivery (the broker requeues what was not acknowledged).
	BatchAcks bool
}

// Consumer delivers messages from one or more queues on a single channel,
// across reconnections. Create it with Broker.NewConsumer.
type Consumer struct {
	b   *Broker
	cfg ConsumerConfig
	log *zap.Logger
	out chan transport.Delivery

	prefetch atomic.Int64

	// change serializes AddQueue and CancelQueue.
	change sync.Mutex

	mu sync.Mutex
	// queues are the queues consumed, start-up ones first; replaced, never
	// modified in place, so a copy of the slice is a snapshot.
	queues []Queue
	// added names the queues added with AddQueue (bounded by
	// MaxAddedQueues).
	added map[string]bool
	// global: the channel last opened uses global QoS.
	global    bool
	gen       *chanGen
	genSeq    uint64
	canceling bool
	stopped   bool
	// qosLogged: the switch to per-consumer QoS was logged; reconnects
	// do not log it again.
	qosLogged bool
	cancelReq chan struct{}
	stop      chan struct{}
	done      chan struct{}
	// loopCtx ends on Cancel or Close; stopCtx only on Close.
	loopCtx    context.Context
	loopCancel context.CancelFunc
	stopCtx    context.Context
	stopCancel context.CancelFunc
}

// chanGen is one AMQP channel of a consumer. Deliveries remember it, so an
// acknowledgement can tell whether the channel it belongs to is still the
// one that delivered it.
type chanGen struct {
	ch        *amqp.Channel
	seq       uint64
	connEpoch uint64
	// global is true when the channel uses global QoS.
	global bool
	// maxPrefetch caps the per-consumer count (quorum queues); 0: none.
	maxPrefetch int
	// quorum names the consumed queues known to be quorum queues; filled
	// before the channel is shared, then under tmu.
	quorum map[string]bool

	// tmu guards the consumer tags, rounds and quorum.
	tmu       sync.Mutex
	tagSeq    uint64            // consumer tags made on the channel
	queues    map[string]string // live consumer tag -> queue name
	cancelled map[string]bool   // tags this consumer cancelled to restart
	cur       *round            // the live consumers' round
	retired   []*round          // earlier rounds with unsettled deliveries
	// restartMu serializes consumer restarts with Cancel.
	restartMu sync.Mutex
	// rpcMu serializes the synchronous methods (basic.qos, basic.consume,
	// basic.cancel, channel.close) sent on the channel by the rebalancer,
	// SetPrefetch, Cancel and the supervisor: amqp091-go matches a reply to
	// whichever caller is waiting, so two methods in flight at once can
	// swap replies and leave one caller waiting forever, and a method sent
	// after channel.close makes the broker close the whole connection
	// (504 CHANNEL_ERROR).
	rpcMu sync.Mutex
	// closing is set, under rpcMu, before channel.close is sent; no
	// method is sent after it.
	closing bool
	kick    chan struct{} // asks the rebalancer to look at the window

	dead   atomic.Bool
	closed chan struct{} // closed when the channel is closed
	err    *amqp.Error   // close reason, set before closed is closed

	fwd          sync.WaitGroup
	fwdDone      chan struct{}
	brokerCancel chan string

	acks *acker // nil unless ConsumerConfig.BatchAcks
}

// rpc sends one synchronous method (fn) on the channel, alone, and not
// after the channel started closing (amqp.ErrClosed). It waits for the
// broker's reply, which ends when the channel or connection closes.
func (g *chanGen) rpc(fn func() error) error {
	g.rpcMu.Lock()
	defer g.rpcMu.Unlock()
	if g.closing {
		return amqp.ErrClosed
	}
	return fn()
}

// closeChannel closes the channel once the method in flight, if any, has
// its reply, so that channel.close is the last method sent and its reply
// goes to this call. The lock is not held while waiting for close-ok: a
// second closeChannel returns at once (amqp091-go's Close sees the channel
// closing), and every later rpc returns amqp.ErrClosed.
func (g *chanGen) closeChannel() {
	g.rpcMu.Lock()
	g.closing = true
	g.rpcMu.Unlock()
	_ = g.ch.Close()
}

// drainAcks writes the acknowledgements recorded but not yet sent.
func (g *chanGen) drainAcks() {
	if g.acks != nil {
		g.acks.drain()
	}
}

func (g *chanGen) isClosed() bool {
	select {
	case <-g.closed:
		return true
	default:
		return false
	}
}

// Delivery is one message received by a Consumer. It must be acknowledged
// (Ack) or rejected (Reject) exactly once, unless the consumer runs with
// NoAck; messages neither acked nor rejected return to the queue when the
// channel closes.
type Delivery struct {
	// Message is the message with its header table converted to the value
	// types of package protocol (AMQP integers of every width as int64,
	// float32 as float64, decimals as strings, nested tables as
	// map[string]any, arrays as []any). HasPriority is true when the
	// priority is not 0: AMQP clients cannot tell an absent priority from 0.
	Message protocol.RawMessage
	// Queue is the queue the message was consumed from.
	Queue string
	// Timestamp is the message's timestamp property (zero when absent;
	// Celery sets none).
	Timestamp time.Time
	// DeliveryTag and ConsumerTag identify the delivery on its channel.
	DeliveryTag uint64
	ConsumerTag string

	gen     *chanGen
	round   *round
	b       *Broker // counts stale acknowledgements
	noAck   bool
	settled atomic.Bool
	// origin is what the deliveries of one consumer on one channel share,
	// for Park; nil: Park makes one.
	origin *deliveryOrigin
}

// deliveryOrigin is what the deliveries of one consumer on one channel
// share: their queue and consumer tag, and what settling them needs
// besides their tag.
type deliveryOrigin struct {
	queue, consumerTag string
	gen                *chanGen
	round              *round
	b                  *Broker
	noAck              bool
}

// round is one set of consumers of a channel started with the same
// per-consumer prefetch count.
type round struct {
	seq       int
	n         int          // the prefetch count the consumers started with
	unsettled atomic.Int64 // deliveries handed over and not settled
	retired   atomic.Bool
}

// Raw returns the message (transport.Delivery).
func (d *Delivery) Raw() *protocol.RawMessage { return &d.Message }

// ConsumedFrom returns the queue the message came from (transport.QueueOf).
func (d *Delivery) ConsumedFrom() string { return d.Queue }

// PublishedAt returns the timestamp property (transport.Published).
func (d *Delivery) PublishedAt() time.Time { return d.Timestamp }

// Epoch identifies the channel the delivery arrived on; it increases with
// every channel the consumer opens.
func (d *Delivery) Epoch() uint64 {
	if d.gen == nil {
		return 0
	}
	return d.gen.seq
}

// DeliveryCount returns the x-delivery-count header RabbitMQ puts on the
// redeliveries of quorum queue messages: how many times the message was
// delivered (and returned) before. On a quorum queue's first delivery the
// header is absent and the count is 0; ok is false for a message of
// another queue type (the header is absent from every delivery).
func (d *Delivery) DeliveryCount() (n int, ok bool) {
	switch v := d.Message.Headers["x-delivery-count"].(type) {
	case int64:
		return int(v), true
	case float64:
		return int(v), true
	}
	if d.gen != nil {
		d.gen.tmu.Lock()
		q := d.gen.quorum[d.Queue]
		d.gen.tmu.Unlock()
		if q {
			return 0, true
		}
	}
	return 0, false
}

// Stale reports whether the channel the delivery arrived on is gone. A
// stale delivery has been (or is being) requeued by the broker and will be
// delivered again; it can no longer be acknowledged.
func (d *Delivery) Stale() bool {
	return d.gen == nil || d.gen.dead.Load() || d.gen.ch.IsClosed()
}

// Ack acknowledges the delivery. It returns ErrStaleDelivery without
// sending anything when the delivery's channel has closed since (the broker
// has requeued the message), and ErrAlreadySettled on a second Ack or
// Reject.
func (d *Delivery) Ack() error {
	var err error
	if d.gen != nil && d.gen.acks != nil {
		err = d.settle(func(*amqp.Channel) error { return d.gen.acks.ack(d.DeliveryTag) })
	} else {
		err = d.settle(func(ch *amqp.Channel) error { return ch.Ack(d.DeliveryTag, false) })
	}
	if d.b != nil && errors.Is(err, ErrStaleDelivery) {
		d.b.staleAcks.Add(1)
	}
	return err
}

// Reject rejects the delivery; with requeue the broker puts it back in the
// queue, otherwise it drops it or dead-letters it. Errors are those of Ack.
func (d *Delivery) Reject(requeue bool) error {
	return d.settle(func(ch *amqp.Channel) error {
		err := ch.Reject(d.DeliveryTag, requeue)
		if d.gen.acks != nil {
			// Written: a later multiple ack may pass over it.
			d.gen.acks.settled(d.DeliveryTag)
		}
		return err
	})
}

func (d *Delivery) settle(send func(*amqp.Channel) error) error {
	if d.noAck {
		return ErrNoAck
	}
	if d.Stale() {
		return ErrStaleDelivery
	}
	if !d.settled.CompareAndSwap(false, true) {
		return ErrAlreadySettled
	}
	if r := d.round; r != nil && r.unsettled.Add(-1) >= 0 && r.retired.Load() {
		d.gen.poke()
	}
	if err := send(d.gen.ch); err != nil {
		if errors.Is(err, amqp.ErrClosed) || d.Stale() {
			return ErrStaleDelivery
		}
		return fmt.Errorf("amqptransport: settle delivery %d: %w", d.DeliveryTag, err)
	}
	return nil
}

// Park returns a handle that settles the delivery without keeping its
// message (transport.Parker): the message's header table and body are left
// to the caller, which holds a compact copy while the message waits for its
// ETA. d must not be used after.
func (d *Delivery) Park() transport.Parked {
	o := d.origin
	if o == nil || o.queue != d.Queue || o.consumerTag != d.ConsumerTag || o.gen != d.gen ||
		o.round != d.round || o.b != d.b || o.noAck != d.noAck {
		o = &deliveryOrigin{queue: d.Queue, consumerTag: d.ConsumerTag, gen: d.gen, round: d.round, b: d.b, noAck: d.noAck}
	}
	p := &parkedDelivery{tag: d.DeliveryTag, origin: o}
	p.settled.Store(d.settled.Load())
	return p
}

// parkedDelivery is a Delivery without its message, in 24 bytes: its tag
// and settle state, and what it shares with the other deliveries of its
// consumer's channel. Its Ack and Reject may be called from any goroutine,
// once between them.
type parkedDelivery struct {
	tag     uint64
	origin  *deliveryOrigin
	settled atomic.Bool
}

// full returns a Delivery for p, unsettled.
func (p *parkedDelivery) full() *Delivery {
	o := p.origin
	return &Delivery{Queue: o.queue, DeliveryTag: p.tag, ConsumerTag: o.consumerTag,
		gen: o.gen, round: o.round, b: o.b, noAck: o.noAck, origin: o}
}

// settle settles p once through a Delivery, as Delivery.settle does.
func (p *parkedDelivery) settle(send func(d *Delivery) error) error {
	if !p.settled.CompareAndSwap(false, true) {
		if p.origin.noAck {
			return ErrNoAck
		}
		return ErrAlreadySettled
	}
	d := p.full()
	err := send(d)
	if !d.settled.Load() {
		p.settled.Store(false) // not sent: stale, or no acknowledgements
	}
	return err
}

// Ack acknowledges the parked delivery (Delivery.Ack).
func (p *parkedDelivery) Ack() error { return p.settle((*Delivery).Ack) }

// Reject rejects the parked delivery (Delivery.Reject).
func (p *parkedDelivery) Reject(requeue bool) error {
	return p.settle(func(d *Delivery) error { return d.Reject(requeue) })
}

// ConsumedFrom returns the queue the message came from (transport.QueueOf).
func (p *parkedDelivery) ConsumedFrom() string { return p.origin.queue }

// Unpark returns the delivery with m as its message.
func (p *parkedDelivery) Unpark(m *protocol.RawMessage) transport.Delivery {
	d := p.full()
	d.settled.Store(p.settled.Load())
	d.Message = *m
	return d
}

// NewConsumer starts consuming. The first channel is opened, its queues declared
// and consumed before NewConsumer returns, so configuration errors (a queue
// declared elsewhere with other flags, a missing queue with NoDeclare) are
// returned here. Later failures (connection loss, channel errors such as a
// consumer_timeout) are logged at WARN and repaired in the background: a new
// channel is opened, the queues are declared and consumed again, the
// prefetch re-applied, and deliveries keep arriving on the same Go channel.
func (b *Broker) NewConsumer(ctx context.Context, cfg ConsumerConfig) (*Consumer, error) {
	if len(cfg.Queues) == 0 {
		return nil, fmt.Errorf("%w: no queue to consume", ErrInvalidConfig)
	}
	for _, q := range cfg.Queues {
		if q.Name == "" {
			return nil, fmt.Errorf("%w: queue without a name", ErrInvalidConfig)
		}
	}
	if cfg.Prefetch < 0 || cfg.Prefetch > MaxPrefetch {
		return nil, fmt.Errorf("%w: prefetch %d outside 0..%d", ErrInvalidConfig, cfg.Prefetch, MaxPrefetch)
	}
	if cfg.ConsumerTag == "" {
		cfg.ConsumerTag = "gworker"
	}
	if len(cfg.ConsumerTag) > 200 {
		return nil, fmt.Errorf("%w: consumer tag prefix longer than 200 bytes", ErrInvalidConfig)
	}
	names := make([]string, len(cfg.Queues))
	for i, q := range cfg.Queues {
		names[i] = q.Name
	}
	c := &Consumer{
		b:         b,
		cfg:       cfg,
		log:       b.log.Named("consumer").With(zap.Strings("queues", names)),
		out:       make(chan transport.Delivery),
		cancelReq: make(chan struct{}),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		queues:    slices.Clone(cfg.Queues),
		added:     map[string]bool{},
	}
	c.prefetch.Store(int64(cfg.Prefetch))
	c.stopCtx, c.stopCancel = context.WithCancel(context.Background())
	c.loopCtx, c.loopCancel = context.WithCancel(c.stopCtx)

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, ErrClosed
	}
	b.consumers[c] = struct{}{}
	b.mu.Unlock()

	s, err := b.main.get(ctx)
	if err == nil {
		var gen *chanGen
		gen, err = c.open(ctx, s)
		if err == nil {
			go c.run(gen)
			return c, nil
		}
	}
	c.stopCancel()
	b.mu.Lock()
	delete(b.consumers, c)
	b.mu.Unlock()
	return nil, err
}

// Deliveries returns the channel of deliveries. It stays the same across
// reconnections and is closed after Cancel (once the broker confirmed the
// cancellation and every delivery already received was handed over) or
// Close.
// Deliveries returns the consumer's messages, each a *Delivery; it is
// closed when the consumer is cancelled or closed.
func (c *Consumer) Deliveries() <-chan transport.Delivery { return c.out }

// Prefetch returns the current prefetch count.
func (c *Consumer) Prefetch() int { return int(c.prefetch.Load()) }

// SetPrefetch changes the prefetch count (0: no limit). It is applied at
// once and again after every reconnection. Celery raises the count by one
// for each ETA message it holds (AddPrefetch does that atomically).
func (c *Consumer) SetPrefetch(n int) error {
	if n < 0 || n > MaxPrefetch {
		return fmt.Errorf("%w: prefetch %d outside 0..%d", ErrInvalidConfig, n, MaxPrefetch)
	}
	c.prefetch.Store(int64(n))
	return c.reapplyQos()
}

// AddPrefetch adds delta (which may be negative) to the prefetch count,
// clamped to 0..MaxPrefetch; a count of 0 (no limit) is left alone.
func (c *Consumer) AddPrefetch(delta int) error {
	for {
		old := c.prefetch.Load()
		if old == 0 {
			return nil
		}
		n := old + int64(delta)
		if n < 1 {
			n = 1
		}
		if n > MaxPrefetch {
			n = MaxPrefetch
		}
		if c.prefetch.CompareAndSwap(old, n) {
			break
		}
	}
	return c.reapplyQos()
}

func (c *Consumer) reapplyQos() error {
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	if gen == nil || gen.isClosed() {
		return nil // applied on the next channel
	}
	if !gen.global {
		// Per-consumer QoS only affects new consumers: the rebalancer
		// restarts them when the window moved enough.
		gen.poke()
		return nil
	}
	err := c.applyQos(gen, int(c.prefetch.Load()))
	if err != nil && (errors.Is(err, amqp.ErrClosed) || gen.ch.IsClosed()) {
		return nil
	}
	return err
}

func (c *Consumer) applyQos(gen *chanGen, n int) error {
	if err := gen.rpc(func() error { return gen.ch.Qos(n, 0, gen.global) }); err != nil {
		return fmt.Errorf("amqptransport: set prefetch %d: %w", n, err)
	}
	return nil
}

// poke asks the channel's rebalancer to look at the per-consumer window.
func (g *chanGen) poke() {
	if g.kick == nil {
		return
	}
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// perConsumerCount is the prefetch count of a new round of consumers: the
// window minus what earlier rounds still hold, at least 1, capped for
// quorum queues; 0 (no limit) stays 0.
func perConsumerCount(window, held, max int) int {
	if window == 0 {
		return 0
	}
	n := window - held
	if n < 1 {
		n = 1
	}
	if max > 0 && n > max {
		n = max
	}
	return n
}

// rebalance runs for a channel with per-consumer QoS until it closes: when
// the prefetch window, minus the deliveries still unsettled, differs from
// what the live consumers may still take by at least a quarter of the
// window (at least 1), it restarts the consumers with a new count.
//
// The rebalancer holds a count of gen.fwd while it runs, so the forwarders
// it starts are never added to a WaitGroup already at zero (fwdDone
// closed, or being closed, under the supervisor).
func (c *Consumer) rebalance(gen *chanGen) {
	defer gen.releaseFwd()
	for {
		select {
		case <-gen.kick:
		case <-gen.closed:
			return
		case <-c.loopCtx.Done():
			return
		}
		if err := c.maybeRestart(gen); err != nil && !gen.ch.IsClosed() && !c.quiet() {
			c.log.Warn("cannot restart consumers with a new prefetch count; reopening the channel", zap.Error(err))
			gen.closeChannel()
		}
	}
}

func (c *Consumer) maybeRestart(gen *chanGen) error {
	gen.restartMu.Lock()
	defer gen.restartMu.Unlock()
	if c.quiet() || gen.isClosed() {
		return nil
	}
	window := int(c.prefetch.Load())
	gen.tmu.Lock()
	cur := gen.cur
	var held int64
	live := gen.retired[:0]
	for _, r := range gen.retired {
		if u := r.unsettled.Load(); u > 0 {
			held += u
			live = append(live, r)
		}
	}
	clear(gen.retired[len(live):])
	gen.retired = live
	gen.tmu.Unlock()
	curHeld := int(cur.unsettled.Load())
	if window == 0 {
		if cur.n == 0 {
			return nil
		}
		return c.restart(gen, cur, 0)
	}
	// What the consumers should still be allowed to take, and what the
	// live ones may.
	want := max(window-int(held)-curHeld, 0)
	if gen.maxPrefetch > 0 {
		want = min(want, gen.maxPrefetch)
	}
	if cur.n > 0 && absInt(want-max(cur.n-curHeld, 0)) < max(1, window/4) {
		return nil
	}
	return c.restart(gen, cur, perConsumerCount(window, int(held)+curHeld, gen.maxPrefetch))
}

func absInt(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// restart starts a new round of consumers with prefetch count n, then
// cancels the previous round's consumers; their deliveries stay valid.
func (c *Consumer) restart(gen *chanGen, old *round, n int) error {
	if err := c.applyQos(gen, n); err != nil {
		return err
	}
	r := &round{seq: old.seq + 1, n: n}
	qs := c.queueList()
	chans, tags, err := c.consumeAll(gen, qs)
	if err != nil {
		return err
	}
	gen.tmu.Lock()
	var oldTags []string
	for tag := range gen.queues {
		if !slices.Contains(tags, tag) {
			oldTags = append(oldTags, tag)
		}
	}
	for _, tag := range oldTags {
		gen.cancelled[tag] = true
	}
	old.retired.Store(true)
	gen.retired = append(gen.retired, old)
	gen.cur = r
	gen.tmu.Unlock()
	c.startForwarders(gen, r, chans, tags, qs)
	for _, tag := range oldTags {
		if err := gen.rpc(func() error { return gen.ch.Cancel(tag, false) }); err != nil {
			return fmt.Errorf("amqptransport: cancel consumer %s: %w", tag, err)
		}
		gen.tmu.Lock()
		delete(gen.queues, tag)
		gen.tmu.Unlock()
	}
	c.log.Debug("consumers restarted with a new prefetch count", zap.Int("prefetch", n),
		zap.Int("window", int(c.prefetch.Load())), zap.Int("round", r.seq))
	return nil
}

// Cancel stops consumption (basic.cancel for every consumer tag), the first
// step of a warm shutdown. It returns once the broker confirmed the
// cancellation or ctx ends. Deliveries already received stay ackable until
// Close; the Deliveries channel is closed once they have all been handed
// over. The consumer does not resume after a reconnection.
func (c *Consumer) Cancel(ctx context.Context) error {
	c.mu.Lock()
	if c.canceling || c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.canceling = true
	close(c.cancelReq)
	c.loopCancel()
	gen := c.gen
	c.mu.Unlock()
	if gen == nil || gen.isClosed() {
		return nil
	}
	errc := make(chan error, 1)
	go func() {
		// A restart in progress finishes first, so that no consumer it
		// starts escapes the cancellation.
		gen.restartMu.Lock()
		gen.tmu.Lock()
		tags := make([]string, 0, len(gen.queues))
		for tag := range gen.queues {
			tags = append(tags, tag)
		}
		gen.tmu.Unlock()
		gen.restartMu.Unlock()
		var errs []error
		for _, tag := range tags {
			if err := gen.rpc(func() error { return gen.ch.Cancel(tag, false) }); err != nil && !errors.Is(err, amqp.ErrClosed) && !gen.ch.IsClosed() {
				errs = append(errs, fmt.Errorf("amqptransport: cancel consumer %s: %w", tag, err))
			}
		}
		errc <- errors.Join(errs...)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return fmt.Errorf("amqptransport: cancel: %w", context.Cause(ctx))
	}
}

// Close closes the consumer's channel: the broker requeues every delivery
// not yet acknowledged, and later Ack/Reject calls return ErrStaleDelivery.
// The Deliveries channel is closed. Close is idempotent.
func (c *Consumer) Close() error {
	c.mu.Lock()
	if !c.stopped {
		c.stopped = true
		close(c.stop)
		c.stopCancel()
	}
	c.mu.Unlock()
	<-c.done
	c.b.mu.Lock()
	delete(c.b.consumers, c)
	c.b.mu.Unlock()
	return nil
}

// open declares (or adopts) every queue, opens a channel, sets QoS and
// consumes every queue.
func (c *Consumer) open(ctx context.Context, s *session) (*chanGen, error) {
	global, maxPrefetch := c.cfg.GlobalQoS, 0
	quorum := map[string]bool{}
	qs := c.queueList()
	if !c.cfg.NoDeclare {
		var nonClassic []string
		targets := make([]delayTarget, 0, len(qs))
		for _, q := range qs {
			d, err := c.b.declareOrAdopt(ctx, s.conn, q)
			if err != nil {
				return nil, err
			}
			if d.typ != QueueTypeClassic {
				nonClassic = append(nonClassic, q.Name)
			}
			if d.typ == QueueTypeQuorum {
				maxPrefetch = QuorumPrefetchMax
				quorum[q.Name] = true
			}
			targets = append(targets, delayTarget{q: q, exchangeType: d.exchangeType, quorum: d.typ == QueueTypeQuorum})
		}
		if c.cfg.DelayedDelivery {
			c.b.noteTargets(targets...)
			if len(quorum) > 0 {
				c.b.delay.consumed(ctx, s, targets, c.log)
			}
		}
		if global && len(nonClassic) > 0 {
			global = false
			c.mu.Lock()
			logged := c.qosLogged
			c.qosLogged = true
			c.mu.Unlock()
			if !logged {
				c.log.Info("consuming with per-consumer prefetch: quorum queues (and queues of unknown type) refuse global QoS",
					zap.Strings("non_classic_queues", nonClassic))
			}
		}
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("amqptransport: open channel: %w", err)
	}
	c.mu.Lock()
	c.genSeq++
	gen := &chanGen{
		ch: ch, seq: c.genSeq, connEpoch: s.epoch,
		global: global, maxPrefetch: maxPrefetch, quorum: quorum,
		queues:       make(map[string]string, len(qs)),
		cancelled:    make(map[string]bool),
		closed:       make(chan struct{}),
		fwdDone:      make(chan struct{}),
		brokerCancel: make(chan string, 1),
	}
	if !global && !c.cfg.NoAck {
		gen.kick = make(chan struct{}, 1)
	}
	if c.cfg.BatchAcks && !c.cfg.NoAck {
		gen.acks = newAcker(ch)
	}
	c.mu.Unlock()
	notify := ch.NotifyClose(make(chan *amqp.Error, 1))
	go func() {
		e := <-notify
		gen.err = e
		gen.dead.Store(true)
		close(gen.closed)
	}()

	window := int(c.prefetch.Load())
	r := &round{seq: 1, n: window}
	if !global {
		r.n = perConsumerCount(window, 0, maxPrefetch)
	}
	var chans []<-chan amqp.Delivery
	var tags []string
	err = withContext(ctx, ch, func() error {
		if err := c.applyQos(gen, r.n); err != nil {
			return err
		}
		var err error
		chans, tags, err = c.consumeAll(gen, qs)
		return err
	})
	if err != nil {
		_ = ch.Close()
		<-gen.closed
		return nil, err
	}
	gen.cur = r

	c.mu.Lock()
	if c.canceling || c.stopped {
		c.mu.Unlock()
		_ = ch.Close()
		<-gen.closed
		return nil, ErrClosed
	}
	c.gen = gen
	c.global = global
	c.mu.Unlock()

	// One count of gen.fwd is held while the channel is in use, by the
	// rebalancer or a keeper, so that the forwarders of queues added later
	// are never added to a WaitGroup already at zero.
	gen.fwd.Add(1)
	c.startForwarders(gen, r, chans, tags, qs)
	go func() {
		gen.fwd.Wait()
		close(gen.fwdDone)
	}()
	if gen.kick != nil {
		go c.rebalance(gen)
	} else {
		go func() {
			select {
			case <-gen.closed:
			case <-c.loopCtx.Done():
			}
			gen.releaseFwd()
		}()
	}
	// Queues added or cancelled while the channel was being opened.
	if err := c.reconcile(gen); err != nil && !c.quiet() {
		c.log.Warn("cannot consume the added queues; reopening the channel", zap.Error(err))
		gen.closeChannel()
	}
	// A SetPrefetch that ran while the channel was being opened did not
	// see it; apply the latest value.
	if int64(window) != c.prefetch.Load() {
		if global {
			_ = c.applyQos(gen, int(c.prefetch.Load()))
		} else {
			gen.poke()
		}
	}
	c.log.Debug("consuming", zap.Uint64("channel_epoch", gen.seq), zap.Uint64("connection_epoch", s.epoch),
		zap.Bool("global_qos", global), zap.Int("prefetch", r.n))
	return gen, nil
}

// consumeAll starts one consumer for each of qs.
func (c *Consumer) consumeAll(gen *chanGen, qs []Queue) ([]<-chan amqp.Delivery, []string, error) {
	var chans []<-chan amqp.Delivery
	var tags []string
	for _, q := range qs {
		d, tag, err := c.consumeOne(gen, q.Name)
		if err != nil {
			return nil, nil, err
		}
		tags = append(tags, tag)
		chans = append(chans, d)
	}
	return chans, tags, nil
}

// consumeOne starts a consumer of queue on the channel, under a tag unique
// to the channel (prefix.connection.channel.n): a tag reused while its
// first consumer lives makes the broker close the connection.
func (c *Consumer) consumeOne(gen *chanGen, queue string) (<-chan amqp.Delivery, string, error) {
	gen.tmu.Lock()
	gen.tagSeq++
	tag := c.cfg.ConsumerTag + "." + strconv.FormatUint(gen.connEpoch, 10) + "." +
		strconv.FormatUint(gen.seq, 10) + "." + strconv.FormatUint(gen.tagSeq, 10)
	gen.tmu.Unlock()
	var d <-chan amqp.Delivery
	err := gen.rpc(func() error {
		var err error
		d, err = gen.ch.Consume(queue, tag, c.cfg.NoAck, c.cfg.Exclusive, false, false, nil)
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("amqptransport: consume queue %q: %w", queue, err)
	}
	gen.tmu.Lock()
	gen.queues[tag] = queue
	gen.tmu.Unlock()
	return d, tag, nil
}

// startForwarders forwards the deliveries of chans, consumed from qs under
// tags, for round r.
func (c *Consumer) startForwarders(gen *chanGen, r *round, chans []<-chan amqp.Delivery, tags []string, qs []Queue) {
	for i, d := range chans {
		gen.fwd.Add(1)
		go c.forward(gen, r, tags[i], qs[i].Name, d)
	}
}

// releaseFwd gives back the count of gen.fwd held while the channel is in
// use, under restartMu, so that reconcile, which adds forwarders under
// restartMu after checking the channel is in use, never adds one to a
// WaitGroup at zero.
func (g *chanGen) releaseFwd() {
	g.restartMu.Lock()
	defer g.restartMu.Unlock()
	g.fwd.Done()
}

func (c *Consumer) forward(gen *chanGen, r *round, tag, queue string, in <-chan amqp.Delivery) {
	defer gen.fwd.Done()
	origin := &deliveryOrigin{queue: queue, consumerTag: tag, gen: gen, b: c.b, noAck: c.cfg.NoAck}
	if !c.cfg.NoAck {
		origin.round = r
	}
	for {
		d, ok := <-in
		if !ok {
			gen.tmu.Lock()
			mine := gen.cancelled[tag]
			delete(gen.cancelled, tag)
			gen.tmu.Unlock()
			if !mine && !gen.ch.IsClosed() {
				select {
				case gen.brokerCancel <- tag:
				default:
				}
			}
			return
		}
		dv := &Delivery{
			Message:     rawFromDelivery(&d),
			Queue:       queue,
			Timestamp:   d.Timestamp,
			DeliveryTag: d.DeliveryTag,
			ConsumerTag: tag,
			gen:         gen,
			b:           c.b,
			noAck:       c.cfg.NoAck,
			origin:      origin,
		}
		if !c.cfg.NoAck {
			dv.round = r
			r.unsettled.Add(1)
		}
		select {
		case c.out <- dv:
		case <-c.stop:
			// Not handed over: the channel closes and the broker
			// requeues it. Drain so amqp091-go's buffer goroutine ends.
			go func() {
				for range in {
				}
			}()
			return
		}
	}
}

// run supervises the consumer until Close.
func (c *Consumer) run(gen *chanGen) {
	defer close(c.done)
	bo := backoff{min: c.b.cfg.ReconnectMin, max: c.b.cfg.ReconnectMax, rnd: rand.Float64}
	needSweep := false
	outClosed := false
	closeOut := func() {
		if !outClosed {
			outClosed = true
			close(c.out)
		}
	}
	defer closeOut()

	for {
		if gen == nil {
			if c.loopCtx.Err() != nil {
				// Cancelled or closed while disconnected.
				closeOut()
				<-c.stop
				return
			}
			s, err := c.b.main.get(c.loopCtx)
			if err != nil {
				continue // loopCtx ended or broker closed: handled above / below
			}
			if needSweep {
				needSweep = false
				c.b.sweep(c.stopCtx, c.queueList(), c.log)
			}
			gen, err = c.open(c.loopCtx, s)
			if err != nil {
				gen = nil
				if c.loopCtx.Err() != nil {
					continue
				}
				d := bo.next()
				c.log.Warn("cannot resume consuming; retrying", zap.Duration("retry_in", d), zap.Error(err))
				if !c.sleep(d) {
					continue
				}
				continue
			}
			bo.reset()
			c.log.Info("consuming again after a channel or connection loss",
				zap.Uint64("channel_epoch", gen.seq), zap.Uint64("connection_epoch", gen.connEpoch))
		}

		select {
		case <-gen.closed:
		case tag := <-gen.brokerCancel:
			if !c.quiet() {
				gen.tmu.Lock()
				queue := gen.queues[tag]
				gen.tmu.Unlock()
				c.log.Warn("broker cancelled the consumer (queue deleted?); reopening the channel",
					zap.String("consumer_tag", tag), zap.String("queue", queue))
				gen.closeChannel()
				// Pause so a deleted queue is not redeclared in a tight
				// loop.
				c.sleep(bo.next())
			}
			continue
		case <-gen.fwdDone:
			if !c.quiet() {
				// The channel died (or the broker cancelled every
				// consumer): the delivery channels closed first.
				if !gen.ch.IsClosed() {
					c.log.Warn("broker cancelled every consumer; reopening the channel")
					gen.closeChannel()
					c.sleep(bo.next())
				}
				<-gen.closed
				break
			}
			// Cancel: every consumer tag ended on a live channel and the
			// deliveries received were handed over. Keep the channel
			// open for their acknowledgements until Close.
			closeOut()
			select {
			case <-c.stop:
			case <-gen.closed:
				<-c.stop
			}
			gen.drainAcks()
			gen.closeChannel()
			<-gen.closed
			return
		case <-c.stop:
			gen.drainAcks()
			gen.closeChannel()
			<-gen.closed
			<-gen.fwdDone
			return
		}

		// The channel is closed.
		<-gen.fwdDone
		c.mu.Lock()
		c.gen = nil
		c.mu.Unlock()
		quiet := c.quiet()
		if e := gen.err; e != nil && !quiet {
			c.log.Warn("consumer channel closed; deliveries not acknowledged are requeued by the broker",
				zap.Uint64("channel_epoch", gen.seq), zap.Int("code", e.Code),
				zap.String("reason", e.Reason), zap.Bool("server", e.Server))
			if isFrameSyntaxClose(e) {
				c.log.Error("connection closed on an unreadable frame: a message probably carries a header amqp091-go cannot decode (field type 'L' written by py-amqp); running a quarantine sweep before consuming again")
				needSweep = true
			}
		}
		gen = nil
		if quiet {
			closeOut()
			<-c.stop
			return
		}
	}
}

// quiet reports whether the consumer is being cancelled or closed.
func (c *Consumer) quiet() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.canceling || c.stopped
}

// sleep waits d or until the consumer is cancelled or closed.
func (c *Consumer) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.loopCtx.Done():
		return false
	}
}

package redistransport

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/transport"
)

// ConsumerConfig configures NewConsumer.
type ConsumerConfig struct {
	// Queues to consume, in the initial order of the cycle.
	Queues []string
	// Prefetch bounds the messages taken from Redis and not yet
	// acknowledged or rejected; 0 means no bound.
	Prefetch int
	// NoDeclare skips binding each queue to its exchange (DeclareTaskQueue)
	// before consuming.
	NoDeclare bool
}

// Consumer takes messages from one or more queues as kombu's Redis channel
// does. Create it with Broker.NewConsumer.
type Consumer struct {
	b    *Broker
	cfg  ConsumerConfig
	log  *zap.Logger
	out  chan transport.Delivery
	wake chan struct{}
	// unackedKey and indexKey are kombu's unacked hash and index.
	unackedKey, indexKey string
	// reconf tells the fetch loop that a queue was cancelled.
	reconf chan struct{}

	acks acker

	mu sync.Mutex
	// qs are the consumed queues, replaced whole when one is added or
	// cancelled; every fetch takes the set current when it starts.
	qs    *queueSet
	order []int // queue cycle, indexes into qs.names
	// cancelWait are closed once the fetch loop has put back what it
	// took from cancelled queues.
	cancelWait []chan struct{}
	owned      map[string]*Delivery // taken from Redis, not settled
	seq        uint64
	prefetch   int
	canceled   bool
	closed     bool

	cancelReq  chan struct{}
	cancelOnce sync.Once
	loopDone   chan struct{}
	bgCancel   context.CancelFunc
	bg         sync.WaitGroup
}

// Delivery is one message taken by a Consumer. It is recorded in kombu's
// unacked hash until Ack or Reject, which must be called once.
type Delivery struct {
	// Message is the message, with Exchange, RoutingKey and Redelivered
	// from its delivery_info.
	Message protocol.RawMessage
	// Queue is the queue it came from; Tag its kombu delivery tag.
	Queue string
	Tag   string

	c       *Consumer
	seq     uint64
	settled atomic.Bool
	stale   atomic.Bool // put back by Cancel or Close
}

// NewConsumer binds the queues (unless NoDeclare), restores messages of dead
// consumers once, and starts taking messages. Connection failures are
// logged and retried in the background.
func (b *Broker) NewConsumer(ctx context.Context, cfg ConsumerConfig) (*Consumer, error) {
	if len(cfg.Queues) == 0 {
		return nil, fmt.Errorf("%w: no queue to consume", ErrInvalidConfig)
	}
	if cfg.Prefetch < 0 {
		return nil, fmt.Errorf("%w: negative prefetch", ErrInvalidConfig)
	}
	for _, q := range cfg.Queues {
		if q == "" {
			return nil, fmt.Errorf("%w: queue without a name", ErrInvalidConfig)
		}
		if !cfg.NoDeclare {
			if err := b.DeclareTaskQueue(ctx, q); err != nil {
				return nil, err
			}
		}
	}
	c, err := b.newConsumer(cfg)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, ErrClosed
	}
	b.consumers[c] = struct{}{}
	b.mu.Unlock()

	bgCtx, cancel := context.WithCancel(context.Background())
	c.bgCancel = cancel
	c.bg.Add(2)
	go c.restoreLoop(bgCtx)
	go c.refreshLoop(bgCtx)
	go c.loop(bgCtx)
	return c, nil
}

// newConsumer builds a consumer of cfg.Queues without starting it.
func (b *Broker) newConsumer(cfg ConsumerConfig) (*Consumer, error) {
	c := &Consumer{
		b:          b,
		cfg:        cfg,
		log:        b.log.Named("consumer").With(zap.Strings("queues", cfg.Queues)),
		out:        make(chan transport.Delivery),
		wake:       make(chan struct{}, 1),
		reconf:     make(chan struct{}, 1),
		unackedKey: b.key(b.cfg.UnackedKey),
		indexKey:   b.key(b.cfg.UnackedIndexKey),
		owned:      map[string]*Delivery{},
		prefetch:   cfg.Prefetch,
		cancelReq:  make(chan struct{}),
		loopDone:   make(chan struct{}),
	}
	var names []string
	var queueJSON []any
	for _, q := range cfg.Queues {
		if slices.Contains(names, q) {
			continue
		}
		j, err := protocol.MarshalJSON(q)
		if err != nil {
			return nil, fmt.Errorf("%w: queue %q: %v", ErrInvalidConfig, q, err)
		}
		names = append(names, q)
		queueJSON = append(queueJSON, string(j))
	}
	c.qs = c.newQueueSet(names, queueJSON)
	for qi := range names {
		c.order = append(c.order, qi)
	}
	c.sortOrder()
	return c, nil
}

// queueSet is the set of queues a fetch takes from. It is not changed once
// built: adding or cancelling a queue builds a new one.
type queueSet struct {
	names []string
	keys  []string       // unacked, index, then the lists by queue and step
	byKey map[string]int // list key -> queue index
	// queueJSON are the queue names as JSON strings, by queue index: the
	// routing keys of the unacked entries the fetch script writes.
	queueJSON []any
}

func (c *Consumer) newQueueSet(names []string, queueJSON []any) *queueSet {
	qs := &queueSet{names: names, queueJSON: queueJSON, byKey: map[string]int{},
		keys: []string{c.unackedKey, c.indexKey}}
	for qi, q := range names {
		for _, s := range c.b.cfg.PrioritySteps {
			k := c.b.key(c.b.QueueKey(q, s))
			qs.keys = append(qs.keys, k)
			qs.byKey[k] = qi
		}
	}
	return qs
}

// sortOrder sorts the cycle by queue name under the sorted strategy. c.mu
// is held (or c is not shared yet).
func (c *Consumer) sortOrder() {
	if c.b.cfg.QueueOrderStrategy == Sorted {
		slices.SortStableFunc(c.order, func(x, y int) int { return cmp.Compare(c.qs.names[x], c.qs.names[y]) })
	}
}

// Queues returns the queues the consumer takes messages from.
func (c *Consumer) Queues() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.qs.names)
}

// AddQueue binds the queue to its exchange (unless NoDeclare) and takes
// its messages too, on the same fetch loop and BRPOP as the other queues,
// at the end of the cycle and within the same prefetch bound
// (transport.QueueAdder). The queue is taken from the next fetch on: a
// BRPOP under way ends within Config.PollTimeout. Adding a consumed queue
// is not an error.
func (c *Consumer) AddQueue(ctx context.Context, name string) error {
	if name == "" {
		return fmt.Errorf("%w: queue without a name", ErrInvalidConfig)
	}
	j, err := protocol.MarshalJSON(name)
	if err != nil {
		return fmt.Errorf("%w: queue %q: %v", ErrInvalidConfig, name, err)
	}
	c.mu.Lock()
	stopped, has := c.canceled, slices.Contains(c.qs.names, name)
	c.mu.Unlock()
	if has {
		return nil
	}
	if stopped {
		return ErrClosed
	}
	if !c.cfg.NoDeclare {
		if err := c.b.DeclareTaskQueue(ctx, name); err != nil {
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if slices.Contains(c.qs.names, name) {
		return nil
	}
	if c.canceled {
		return ErrClosed
	}
	c.qs = c.newQueueSet(append(slices.Clone(c.qs.names), name), append(slices.Clone(c.qs.queueJSON), string(j)))
	c.order = append(c.order, len(c.qs.names)-1)
	c.sortOrder()
	return nil
}

// CancelQueue stops taking messages from the queue (transport.QueueAdder).
// It returns once the fetch under way has ended (within
// Config.PollTimeout) and the messages it took from the queue and did not
// hand over are back at the head of the queue, or when ctx ends.
// Deliveries already handed over stay valid. The last queue cannot be
// cancelled: Cancel the consumer instead.
func (c *Consumer) CancelQueue(ctx context.Context, name string) error {
	c.mu.Lock()
	qi := slices.Index(c.qs.names, name)
	if qi < 0 {
		c.mu.Unlock()
		return fmt.Errorf("%w: %q", transport.ErrNotConsuming, name)
	}
	if len(c.qs.names) == 1 {
		c.mu.Unlock()
		return fmt.Errorf("%w: %q is the last queue of the consumer", ErrInvalidConfig, name)
	}
	c.qs = c.newQueueSet(slices.Delete(slices.Clone(c.qs.names), qi, qi+1),
		slices.Delete(slices.Clone(c.qs.queueJSON), qi, qi+1))
	order := c.order[:0:0]
	for _, q := range c.order {
		switch {
		case q < qi:
			order = append(order, q)
		case q > qi:
			order = append(order, q-1)
		}
	}
	c.order = order
	done := make(chan struct{})
	c.cancelWait = append(c.cancelWait, done)
	c.mu.Unlock()
	select {
	case c.reconf <- struct{}{}:
	default:
	}
	select {
	case <-done:
		return nil
	case <-c.loopDone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dropCancelled puts back at the head of their queues the messages in buf
// whose queue was cancelled, and returns the others (fetch loop only).
func (c *Consumer) dropCancelled(buf []*Delivery) []*Delivery {
	c.mu.Lock()
	names, waiters := c.qs.names, c.cancelWait
	c.cancelWait = nil
	var keep, drop []*Delivery
	for _, d := range buf {
		if slices.Contains(names, d.Queue) {
			keep = append(keep, d)
			continue
		}
		d.settled.Store(true)
		d.stale.Store(true)
		drop = append(drop, d)
	}
	c.mu.Unlock()
	if len(drop) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), c.b.cfg.SettleTimeout)
		_ = c.restoreHead(ctx, drop)
		cancel()
	}
	for _, w := range waiters {
		close(w)
	}
	return keep
}

// Deliveries is closed after Cancel or Close, once the messages taken but
// not handed over have been put back.
func (c *Consumer) Deliveries() <-chan transport.Delivery { return c.out }

// SetPrefetch changes the bound on unacknowledged messages; 0 means none.
func (c *Consumer) SetPrefetch(n int) error {
	if n < 0 {
		return fmt.Errorf("%w: negative prefetch", ErrInvalidConfig)
	}
	c.mu.Lock()
	c.prefetch = n
	c.mu.Unlock()
	c.poke()
	return nil
}

// Outstanding returns how many messages the consumer holds unsettled.
func (c *Consumer) Outstanding() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.owned)
}

func (c *Consumer) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Cancel stops taking messages. Messages taken and not yet handed over are
// put back at the head of their queue; deliveries already handed over stay
// valid, and from now on Reject with requeue also puts them back at the
// head (they were never started, as at kombu's shutdown restore). It waits
// until Deliveries is closed or ctx ends.
func (c *Consumer) Cancel(ctx context.Context) error {
	c.mu.Lock()
	c.canceled = true
	c.mu.Unlock()
	c.cancelOnce.Do(func() { close(c.cancelReq) })
	select {
	case <-c.loopDone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close cancels the consumer and puts every message it still holds back at
// the head of its queue (kombu's restore at shutdown); their deliveries then
// answer Ack and Reject with ErrStaleDelivery.
func (c *Consumer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.b.cfg.SettleTimeout)
	defer cancel()
	cerr := c.Cancel(ctx)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	var left []*Delivery
	for _, d := range c.owned {
		if d.settled.CompareAndSwap(false, true) {
			d.stale.Store(true)
			left = append(left, d)
		}
	}
	c.mu.Unlock()
	err := c.restoreHead(ctx, left)
	c.bgCancel()
	c.bg.Wait()
	<-c.loopDone // ends within SettleTimeout once bgCancel stops its retries
	c.b.mu.Lock()
	delete(c.b.consumers, c)
	c.b.mu.Unlock()
	return errors.Join(cerr, err)
}

// restoreHead puts ds back at the head of their queues, the earliest taken
// ending up first.
func (c *Consumer) restoreHead(ctx context.Context, ds []*Delivery) error {
	slices.SortFunc(ds, func(x, y *Delivery) int { return cmp.Compare(y.seq, x.seq) })
	var errs []error
	for _, d := range ds {
		err := c.b.retry(ctx, func(ctx context.Context) error {
			_, err := c.b.restoreByTag(ctx, d.Tag, false)
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", d.Tag, err))
		}
		c.mu.Lock()
		delete(c.owned, d.Tag)
		c.mu.Unlock()
	}
	if len(errs) > 0 {
		c.log.Warn("messages left in the unacked hash; they return after the visibility timeout", zap.Errors("errors", errs))
	}
	return errors.Join(errs...)
}

// room is how many more messages the prefetch allows.
func (c *Consumer) room() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.prefetch == 0 {
		return c.b.cfg.Batch
	}
	return min(c.prefetch-len(c.owned), c.b.cfg.Batch)
}

func (c *Consumer) stopping() bool {
	select {
	case <-c.cancelReq:
		return true
	default:
		return false
	}
}

// loop takes messages and hands them over until Cancel.
func (c *Consumer) loop(ctx context.Context) {
	defer close(c.loopDone)
	var buf []*Delivery
	bo := c.b.backoff()
	for !c.stopping() && ctx.Err() == nil {
		select {
		case <-c.reconf:
			buf = c.dropCancelled(buf)
			continue
		default:
		}
		if len(buf) > 0 {
			select {
			case c.out <- buf[0]:
				buf = buf[1:]
			case <-c.reconf:
				buf = c.dropCancelled(buf)
			case <-c.cancelReq:
			}
			continue
		}
		n := c.room()
		if n <= 0 {
			select {
			case <-c.wake:
			case <-c.reconf:
				buf = c.dropCancelled(buf)
			case <-c.cancelReq:
			}
			continue
		}
		got, err := c.fetch(ctx, n)
		if err != nil {
			c.log.Warn("taking messages from Redis failed; retrying", zap.Error(err))
			wctx, cancel := context.WithCancel(ctx)
			go func() {
				select {
				case <-c.cancelReq:
				case <-wctx.Done():
				}
				cancel()
			}()
			bo.wait(wctx)
			cancel()
			continue
		}
		bo = c.b.backoff()
		buf = append(buf, got...)
	}
	c.mu.Lock()
	for _, d := range buf {
		d.settled.Store(true)
		d.stale.Store(true)
	}
	c.mu.Unlock()
	rctx, cancel := context.WithTimeout(context.Background(), c.b.cfg.SettleTimeout)
	_ = c.restoreHead(rctx, buf)
	cancel()
	close(c.out)
}

// FetchBatchBytes bounds the bytes one fetch takes from Redis (it always
// takes at least one message): the fetch script runs while Redis serves
// no one else, and its reply must arrive within the socket timeout.
const FetchBatchBytes = 1 << 20

// fetch takes up to n messages atomically with their unacked bookkeeping;
// when every list is empty it waits on BRPOP for one. When the fetch
// script's reply is lost (a timeout, a dropped connection), what it
// recorded is put back at the head of its queue at once rather than left
// for the visibility timeout.
func (c *Consumer) fetch(ctx context.Context, n int) ([]*Delivery, error) {
	c.mu.Lock()
	qs, order := c.qs, slices.Clone(c.order)
	c.mu.Unlock()
	ns := len(c.b.cfg.PrioritySteps)
	args := make([]any, 0, 6+len(order)+n+len(qs.names))
	now := float64(time.Now().UnixMicro()) / 1e6
	rot := "0"
	if c.b.cfg.QueueOrderStrategy == RoundRobin {
		rot = "1"
	}
	args = append(args, n, fmt.Sprintf("%f", now), ns, rot, FetchBatchBytes, len(order))
	for _, q := range order {
		args = append(args, q)
	}
	tags := make([]string, n)
	for i := range tags {
		tags[i] = newTag()
		args = append(args, tags[i])
	}
	args = append(args, qs.queueJSON...)
	res, err := fetchScript.Run(ctx, c.b.client, qs.keys, args...).Slice()
	if err != nil && !errors.Is(err, redis.Nil) {
		// The script may have run and recorded messages whose reply
		// never came: put them back now.
		c.restoreLost(tags)
		return nil, err
	}
	var out []*Delivery
	for i := 0; i+2 < len(res); i += 3 {
		qi, _ := res[i].(int64)
		item, _ := res[i+1].(string)
		tag, _ := res[i+2].(string)
		queue := qs.names[qi]
		c.rotate(queue)
		if d := c.take(ctx, queue, []byte(item), tag); d != nil {
			out = append(out, d)
		}
	}
	if len(res) > 0 {
		return out, nil
	}
	// Nothing waiting: block like kombu, every queue's lists in cycle order.
	keys := make([]string, 0, ns*len(order))
	for s := range ns {
		for _, q := range order {
			keys = append(keys, qs.keys[2+q*ns+s])
		}
	}
	kv, err := c.b.client.BRPop(ctx, c.b.cfg.PollTimeout, keys...).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	queue := qs.names[qs.byKey[kv[0]]]
	c.rotate(queue)
	if d := c.take(ctx, queue, []byte(kv[1]), ""); d != nil {
		out = append(out, d)
	}
	return out, nil
}

// restoreLost puts back what a fetch whose reply was lost may have
// recorded under tags, the first taken at the head of its queue.
func (c *Consumer) restoreLost(tags []string) {
	ctx, cancel := context.WithTimeout(context.Background(), c.b.cfg.SettleTimeout)
	defer cancel()
	n := 0
	for i := len(tags) - 1; i >= 0; i-- {
		ok, err := c.b.restoreByTag(ctx, tags[i], false)
		if err != nil {
			c.log.Warn("putting back the messages of a failed fetch failed; the visibility timeout will", zap.Error(err))
			return
		}
		if ok {
			n++
		}
	}
	if n > 0 {
		c.log.Warn("a fetch's reply was lost; its messages were put back", zap.Int("count", n))
	}
}

// rotate replays the round_robin move of the served queue to the end.
func (c *Consumer) rotate(queue string) {
	if c.b.cfg.QueueOrderStrategy != RoundRobin {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	qi := slices.Index(c.qs.names, queue)
	if i := slices.Index(c.order, qi); qi >= 0 && i >= 0 {
		c.order = append(append(c.order[:i:i], c.order[i+1:]...), qi)
	}
}

// take turns one popped item into a Delivery. tag is empty when the
// unacked entry is not written yet. A bad envelope is moved to the
// dead-letter list and nil returned.
func (c *Consumer) take(ctx context.Context, queue string, item []byte, tag string) *Delivery {
	env, err := decodeEnvelope(item)
	if err == nil && tag == "" {
		tag = newTag()
		entry := unackedEntry(item, "", queue)
		score := float64(time.Now().UnixMicro()) / 1e6
		err = c.b.retry(ctx, func(ctx context.Context) error {
			_, err := c.b.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.ZAdd(ctx, c.indexKey, redis.Z{Score: score, Member: tag})
				p.HSet(ctx, c.unackedKey, tag, entry)
				return nil
			})
			return err
		})
		if err != nil {
			// The message exists only here: put it back at the head.
			c.log.Error("recording an unacked message failed; pushing it back", zap.Error(err))
			_ = c.b.retry(context.WithoutCancel(ctx), func(ctx context.Context) error {
				return c.b.client.RPush(ctx, c.b.key(queue), item).Err()
			})
			return nil
		}
	}
	if err != nil {
		c.log.Error("bad message moved to the dead-letter list",
			zap.String("queue", queue), zap.String("list", c.b.cfg.DeadLetterKey), zap.Error(err))
		_ = c.b.retry(context.WithoutCancel(ctx), func(ctx context.Context) error {
			return asideScript.Run(ctx, c.b.client, []string{c.unackedKey, c.indexKey, c.b.key(c.b.cfg.DeadLetterKey)}, tag, item).Err()
		})
		return nil
	}
	d := &Delivery{Message: env.raw, Queue: queue, Tag: tag, c: c}
	c.mu.Lock()
	c.seq++
	d.seq = c.seq
	c.owned[tag] = d
	c.mu.Unlock()
	return d
}

// restoreLoop restores messages of dead consumers at start and every
// RestoreInterval, as kombu's consumers do.
func (c *Consumer) restoreLoop(ctx context.Context) {
	defer c.bg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := c.b.RestoreVisible(ctx, c.owns); err != nil && ctx.Err() == nil {
			c.log.Warn("restoring messages of dead consumers failed", zap.Error(err))
		}
		t.Reset(c.b.cfg.RestoreInterval)
	}
}

func (c *Consumer) owns(tag string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.owned[tag]
	return ok
}

// refreshLoop moves the unacked_index score of every message this consumer
// holds to now, four times per visibility timeout, so that no consumer
// (gworker or Python) restores a message whose consumer is alive: a task
// held for a far ETA or running long is not delivered twice. Messages of a
// consumer that dies stop being refreshed and are restored after the
// visibility timeout, as in kombu.
func (c *Consumer) refreshLoop(ctx context.Context) {
	defer c.bg.Done()
	every := max(c.b.cfg.VisibilityTimeout/4, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		tags := make([]string, 0, len(c.owned))
		for tag := range c.owned {
			tags = append(tags, tag)
		}
		c.mu.Unlock()
		if len(tags) == 0 {
			continue
		}
		score := float64(time.Now().UnixMicro()) / 1e6
		zs := make([]redis.Z, len(tags))
		for i, tag := range tags {
			zs[i] = redis.Z{Score: score, Member: tag}
		}
		if err := c.b.client.ZAddXX(ctx, c.indexKey, zs...).Err(); err != nil && ctx.Err() == nil {
			c.log.Warn("refreshing unacked messages failed", zap.Error(err))
		}
	}
}

// Raw returns the message (transport.Delivery).
func (d *Delivery) Raw() *protocol.RawMessage { return &d.Message }

// ConsumedFrom returns the queue the message came from (transport.QueueOf).
func (d *Delivery) ConsumedFrom() string { return d.Queue }

// Park drops the delivery's message while it waits to be settled
// (transport.Parker): settling needs only its tag, the message stays in
// the unacked hash. Unpark gives it a message back.
func (d *Delivery) Park() transport.Parked {
	d.Message = protocol.RawMessage{}
	return parkedDelivery{d}
}

// parkedDelivery is a Delivery whose message was dropped (Park).
type parkedDelivery struct{ d *Delivery }

func (p parkedDelivery) Ack() error                { return p.d.Ack() }
func (p parkedDelivery) Reject(requeue bool) error { return p.d.Reject(requeue) }

// ConsumedFrom returns the queue the message came from (transport.QueueOf).
func (p parkedDelivery) ConsumedFrom() string { return p.d.Queue }

// Unpark returns the delivery with m as its message.
func (p parkedDelivery) Unpark(m *protocol.RawMessage) transport.Delivery {
	p.d.Message = *m
	return p.d
}

// Ack acknowledges the delivery: its unacked entry and index score are
// removed (kombu: ZREM + HDEL). Connection failures are retried up to
// Config.SettleTimeout.
func (d *Delivery) Ack() error {
	if err := d.claim(); err != nil {
		return err
	}
	return d.finish(func(ctx context.Context) error { return d.c.acks.ack(ctx, d.c, d.Tag) })
}

// acker merges acknowledgements made at the same time into one write
// (ZREM and HDEL of every tag, in one MULTI/EXEC): the first Ack writes,
// those arriving meanwhile are written together right after. Every Ack
// returns once its own write is done.
type acker struct {
	mu      sync.Mutex
	writing bool
	tags    []string
	waiters []chan error
}

func (a *acker) ack(ctx context.Context, c *Consumer, tag string) error {
	done := make(chan error, 1)
	a.mu.Lock()
	a.tags = append(a.tags, tag)
	a.waiters = append(a.waiters, done)
	if a.writing {
		a.mu.Unlock()
		return <-done
	}
	a.writing = true
	for len(a.tags) > 0 {
		tags, waiters := a.tags, a.waiters
		a.tags, a.waiters = nil, nil
		a.mu.Unlock()
		members := make([]any, len(tags))
		for i, t := range tags {
			members[i] = t
		}
		err := c.b.retry(ctx, func(ctx context.Context) error {
			_, err := c.b.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.ZRem(ctx, c.indexKey, members...)
				p.HDel(ctx, c.unackedKey, tags...)
				return nil
			})
			return err
		})
		for _, w := range waiters {
			w <- err
		}
		a.mu.Lock()
	}
	a.writing = false
	a.mu.Unlock()
	return <-done
}

// Reject settles the delivery. With requeue the message goes back to its
// queue flagged redelivered: at the back, as kombu's reject does, or at the
// head once the consumer is cancelled (a message handed over but not run
// at shutdown). Without requeue it is dropped.
func (d *Delivery) Reject(requeue bool) error {
	if !requeue {
		return d.Ack()
	}
	if err := d.claim(); err != nil {
		return err
	}
	d.c.mu.Lock()
	leftmost := !d.c.canceled
	d.c.mu.Unlock()
	return d.finish(func(ctx context.Context) error {
		_, err := d.c.b.restoreByTag(ctx, d.Tag, leftmost)
		return err
	})
}

func (d *Delivery) claim() error {
	if d.c == nil {
		return ErrStaleDelivery
	}
	d.c.mu.Lock()
	defer d.c.mu.Unlock()
	if d.stale.Load() {
		return ErrStaleDelivery
	}
	if d.c.owned[d.Tag] != d || !d.settled.CompareAndSwap(false, true) {
		return ErrAlreadySettled
	}
	return nil
}

func (d *Delivery) finish(op func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), d.c.b.cfg.SettleTimeout)
	defer cancel()
	err := d.c.b.retry(ctx, op)
	d.c.mu.Lock()
	if d.c.owned[d.Tag] == d {
		delete(d.c.owned, d.Tag)
	}
	d.c.mu.Unlock()
	d.c.poke()
	if err != nil {
		return fmt.Errorf("redistransport: settle %s: %w", d.Tag, err)
	}
	return nil
}

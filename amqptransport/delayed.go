package amqptransport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
)

// Native delayed delivery, as kombu 5.5 (native_delayed_delivery) and
// Celery 5.5's DelayedDelivery bootstep build it: 28 levels, each a topic
// exchange and a queue named celery_delayed_<level>, where a message waits
// 2^level seconds before it is dead-lettered to the level below; the
// routing key spells the countdown in 28 binary words, most significant
// first, and a message skips every level whose word is 0. Past level 0 it
// reaches celery_delayed_delivery, to which the exchange of every task
// queue is bound with "#.<routing key>", and so its queue.
const (
	// DelayLevels is the number of levels, and of words in a delay
	// prefix.
	DelayLevels = 28
	// MaxDelay is the longest countdown the levels express, 2^28-1
	// seconds (about 8.5 years). A longer one is sent with MaxDelay: the
	// worker holds the message for the rest.
	MaxDelay = (1<<DelayLevels - 1) * time.Second
	// DelayEntryExchange is where a delayed message is published.
	DelayEntryExchange = "celery_delayed_27"
	// DelayDeliveryExchange receives the messages whose delay is over.
	DelayDeliveryExchange = "celery_delayed_delivery"
)

const delayLevelPrefix = "celery_delayed_"

// delaySlack is added to the time left until a message is due before it
// is counted in whole seconds: a countdown of n seconds becomes an eta a
// little before the message is published, and without it would lose a
// whole second to those microseconds. A message arrives at most that much
// after its eta, and up to a second before it (the worker holds it).
const delaySlack = 50 * time.Millisecond

// Bounds of the retries of a delayed delivery set-up that failed (a
// permission or a policy refused it, a node of the failover list is down).
const (
	delayRetryMin = time.Second
	delayRetryMax = time.Minute
)

// delayLevel names the exchange and the queue of a level.
func delayLevel(level int) string { return delayLevelPrefix + strconv.Itoa(level) }

// isDelayExchange reports whether name is an exchange of the topology.
func isDelayExchange(name string) bool {
	if name == DelayDeliveryExchange {
		return true
	}
	rest, ok := strings.CutPrefix(name, delayLevelPrefix)
	if !ok {
		return false
	}
	n, err := strconv.Atoi(rest)
	return err == nil && n >= 0 && n < DelayLevels && strconv.Itoa(n) == rest
}

// DelayRoutingKey returns the routing key under which a message published
// to DelayEntryExchange waits countdown and then reaches the queues bound
// with key: the whole seconds of countdown (truncated, as Celery passes
// int(countdown) to kombu's calculate_routing_key) as 28 binary words, then
// key. The delay prefixes key already has are stripped first, so a message
// delayed again keeps a short key. A countdown over MaxDelay is MaxDelay.
// ok is false when countdown is under one second, which the levels cannot
// express, when key is empty, or when the result would be longer than the
// 255 bytes AMQP allows.
func DelayRoutingKey(countdown time.Duration, key string) (string, bool) {
	key, _ = StripDelayPrefix(key)
	if countdown < time.Second || key == "" || 2*DelayLevels+len(key) > 255 {
		return "", false
	}
	countdown = min(countdown, MaxDelay)
	secs := int64(countdown / time.Second)
	var b strings.Builder
	b.Grow(2*DelayLevels + len(key))
	for i := DelayLevels - 1; i >= 0; i-- {
		if secs>>i&1 == 1 {
			b.WriteString("1.")
		} else {
			b.WriteString("0.")
		}
	}
	b.WriteString(key)
	return b.String(), true
}

// StripDelayPrefix returns key without the delay prefixes at its start (28
// words, each "0" or "1", followed by a non-empty key); stripped is false
// when it has none and key is returned as it is.
func StripDelayPrefix(key string) (rest string, stripped bool) {
	for hasDelayPrefix(key) {
		key, stripped = key[2*DelayLevels:], true
	}
	return key, stripped
}

func hasDelayPrefix(key string) bool {
	if len(key) <= 2*DelayLevels {
		return false
	}
	for i := 0; i < DelayLevels; i++ {
		if c := key[2*i]; (c != '0' && c != '1') || key[2*i+1] != '.' {
			return false
		}
	}
	return true
}

// delayLevelQueue is the declaration of a level's queue, exchange and
// binding with exactly the flags and arguments kombu's
// declare_native_delayed_delivery_exchanges_and_queues gives them, so that
// a Celery 5.5 worker and gworker declare them in either order.
func delayLevelQueue(level int, queueType string) Queue {
	next := DelayDeliveryExchange
	if level > 0 {
		next = delayLevel(level - 1)
	}
	args := map[string]any{
		"x-queue-type":           queueType,
		"x-overflow":             "reject-publish",
		"x-message-ttl":          int64(1) << level * 1000,
		"x-dead-letter-exchange": next,
	}
	if queueType == QueueTypeQuorum {
		args["x-dead-letter-strategy"] = "at-least-once"
	}
	return Queue{
		Name: delayLevel(level), Durable: true, Arguments: args,
		Exchange: delayLevel(level), ExchangeType: "topic", ExchangeDurable: true,
		RoutingKey: strings.Repeat("*.", DelayLevels-1-level) + "1.#",
	}
}

// delayBindingKey is the key kombu's
// bind_queue_to_native_delayed_delivery_exchange binds a queue's exchange
// (to the delivery exchange) and the queue (to its exchange) with.
func delayBindingKey(routingKey string) string {
	if strings.HasPrefix(routingKey, "#") {
		return routingKey
	}
	return "#." + routingKey
}

// delayTarget is a task queue as declared (or adopted) on the broker: what
// binding it for delayed delivery, and publishing to it, needs to know.
type delayTarget struct {
	q Queue
	// exchangeType is the type of q's exchange on the broker ("" when
	// unknown).
	exchangeType string
	quorum       bool
}

// bindable reports whether delayed messages can reach the queue: its
// exchange is a topic or fanout exchange (Celery's condition: not direct).
func (t delayTarget) bindable() bool {
	return t.q.Exchange != "" && (t.exchangeType == "topic" || t.exchangeType == "fanout")
}

// declareDelayTopology declares the 28 levels and the delivery exchange
// and binds them, on channels of their own over conn. Each declaration is
// idempotent; a level that exists with other arguments (declared with
// another broker_native_delayed_delivery_queue_type, say) is used as it
// is, with a WARN line, as task queues are.
func (b *Broker) declareDelayTopology(ctx context.Context, conn *amqp.Connection) error {
	for level := DelayLevels - 1; level >= 0; level-- {
		if _, err := b.declareOrAdopt(ctx, conn, delayLevelQueue(level, b.cfg.DelayedDeliveryQueueType)); err != nil {
			return fmt.Errorf("level %d: %w", level, err)
		}
	}
	if err := b.declareExchangeOn(ctx, conn, DelayDeliveryExchange, "topic", true); err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("amqptransport: open channel: %w", err)
	}
	defer ch.Close()
	return withContext(ctx, ch, func() error {
		key := "0.#"
		for level := DelayLevels - 1; level > 0; level-- {
			if err := ch.ExchangeBind(delayLevel(level-1), key, delayLevel(level), false, nil); err != nil {
				return fmt.Errorf("amqptransport: bind exchange %q to %q: %w", delayLevel(level-1), delayLevel(level), err)
			}
			key = "*." + key
		}
		if err := ch.ExchangeBind(DelayDeliveryExchange, key, delayLevel(0), false, nil); err != nil {
			return fmt.Errorf("amqptransport: bind exchange %q to %q: %w", DelayDeliveryExchange, delayLevel(0), err)
		}
		return nil
	})
}

// bindDelayTargets binds each target's exchange to the delivery exchange
// and the target's queue to its exchange. With declare, the targets are
// declared first (or adopted), as a consumer declares its queues: on a node
// of the failover list the consumer is not connected to, they may not
// exist yet. Targets on a direct exchange are skipped with Celery's
// warning. It returns how many were bound.
func (b *Broker) bindDelayTargets(ctx context.Context, conn *amqp.Connection, targets []delayTarget, declare bool) (int, error) {
	var bind []delayTarget
	for _, t := range targets {
		if declare {
			d, err := b.declareOrAdopt(ctx, conn, t.q)
			if err != nil {
				return 0, err
			}
			t.exchangeType = d.exchangeType
		}
		switch {
		case t.q.Exchange == "":
		case t.bindable():
			bind = append(bind, t)
		default:
			b.warnUnbindable(t)
		}
	}
	if len(bind) == 0 {
		return 0, nil
	}
	ch, err := conn.Channel()
	if err != nil {
		return 0, fmt.Errorf("amqptransport: open channel: %w", err)
	}
	defer ch.Close()
	err = withContext(ctx, ch, func() error {
		for _, t := range bind {
			key := delayBindingKey(t.q.RoutingKey)
			if err := ch.ExchangeBind(t.q.Exchange, key, DelayDeliveryExchange, false, nil); err != nil {
				return fmt.Errorf("amqptransport: bind exchange %q to %q: %w", t.q.Exchange, DelayDeliveryExchange, err)
			}
			if err := ch.QueueBind(t.q.Name, key, t.q.Exchange, false, nil); err != nil {
				return fmt.Errorf("amqptransport: bind queue %q to %q: %w", t.q.Name, t.q.Exchange, err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(bind), nil
}

// warnUnbindable says once per exchange that delayed messages cannot reach
// a queue, as Celery's worker warns about direct exchanges.
func (b *Broker) warnUnbindable(t delayTarget) {
	key := "unbindable " + t.q.Exchange
	b.mu.Lock()
	seen := b.logged[key] == t.exchangeType
	b.logged[key] = t.exchangeType
	b.mu.Unlock()
	if seen {
		return
	}
	typ := t.exchangeType
	if typ == "" {
		typ = "unknown"
	}
	b.log.Warn("native delayed delivery: the exchange of a task queue is not a topic or fanout exchange, which native delayed delivery needs; its ETA and countdown tasks are held by the worker until they are due",
		zap.String("exchange", t.q.Exchange), zap.String("exchange_type", typ), zap.String("queue", t.q.Name))
}

// noteTargets records task queues as declared, for the routing of delayed
// publishes (delayRoute).
func (b *Broker) noteTargets(targets ...delayTarget) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, t := range targets {
		b.targets[t.q.Name] = t
	}
}

// findTarget returns the known task queue a publish to exchange with key
// reaches: the queue named key through the default exchange, else a queue
// bound to exchange with key (any queue of a fanout exchange).
func (b *Broker) findTarget(exchange, key string) (delayTarget, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if exchange == "" {
		t, ok := b.targets[key]
		return t, ok
	}
	var found []delayTarget
	for _, t := range b.targets {
		if t.q.Exchange == exchange && (t.q.RoutingKey == key || t.exchangeType == "fanout") {
			found = append(found, t)
		}
	}
	if len(found) == 0 {
		return delayTarget{}, false
	}
	// Several queues may match: prefer one delayed messages can reach,
	// then the first name, so the choice does not depend on map order.
	slices.SortFunc(found, func(x, y delayTarget) int {
		if dx, dy := x.quorum && x.bindable(), y.quorum && y.bindable(); dx != dy {
			if dx {
				return -1
			}
			return 1
		}
		return strings.Compare(x.q.Name, y.q.Name)
	})
	return found[0], true
}

// delayPlan is where delayRoute sends a message.
type delayPlan struct {
	exchange, key string
	// delayed: through the levels; target is then the queue to bind
	// (nil when the key already came through the topology).
	delayed bool
	target  *delayTarget
}

// planDelay decides the route of a message published to exchange with key,
// due in countdown (0: not delayed):
//
//   - a message delivered through the topology (its exchange is one of
//     the levels or the delivery exchange, its key has a delay prefix) and
//     published again goes back through the levels with a new prefix in
//     place of the old one when it is due in a second or more, else
//     straight to the delivery exchange with the bare key: never to the
//     level it came from, where it would wait again;
//   - a message due in a second or more to a quorum queue bound to a topic
//     or fanout exchange goes through the levels, as Celery 5.5 sends it;
//   - anything else goes where it was sent (the worker holds a message
//     due in under a second).
func planDelay(exchange, key string, countdown time.Duration, find func(exchange, key string) (delayTarget, bool)) delayPlan {
	if isDelayExchange(exchange) {
		base, stripped := StripDelayPrefix(key)
		if stripped {
			if dk, ok := DelayRoutingKey(countdown, base); ok {
				return delayPlan{exchange: DelayEntryExchange, key: dk, delayed: true}
			}
		}
		return delayPlan{exchange: DelayDeliveryExchange, key: base}
	}
	unchanged := delayPlan{exchange: exchange, key: key}
	if countdown < time.Second {
		return unchanged
	}
	t, ok := find(exchange, key)
	if !ok || !t.quorum || !t.bindable() {
		return unchanged
	}
	dk, ok := DelayRoutingKey(countdown, t.q.RoutingKey)
	if !ok {
		return unchanged
	}
	return delayPlan{exchange: DelayEntryExchange, key: dk, delayed: true, target: &t}
}

// delayRoute returns where to publish a message for exchange and key, due
// at due (zero: not delayed). A route through the levels is used only once
// the topology is declared, and the target queue bound, on the publishing
// connection's node; when that fails the message goes where it was sent
// and the worker holds it until it is due.
func (b *Broker) delayRoute(ctx context.Context, pub *publisher, exchange, key string, due time.Time) (string, string) {
	var countdown time.Duration
	if !due.IsZero() {
		countdown = time.Until(due) + delaySlack
	}
	plan := planDelay(exchange, key, countdown, b.findTarget)
	if !plan.delayed {
		return plan.exchange, plan.key
	}
	err := pub.ensureDelay(ctx, b, plan.target)
	if err == nil {
		return plan.exchange, plan.key
	}
	b.delayFailure("", "cannot declare the topology on the publishing connection; publishing the message undelayed (the worker holds it until it is due)", err)
	if isDelayExchange(exchange) {
		base, _ := StripDelayPrefix(key)
		return DelayDeliveryExchange, base
	}
	return exchange, key
}

// ensureDelay declares the topology once per publishing connection, and
// binds t once per connection.
func (p *publisher) ensureDelay(ctx context.Context, b *Broker, t *delayTarget) error {
	s, err := p.m.get(ctx)
	if err != nil {
		return err
	}
	p.dmu.Lock()
	defer p.dmu.Unlock()
	if p.dEpoch != s.epoch {
		p.dEpoch, p.dTopology, p.dBound = s.epoch, false, map[string]bool{}
	}
	if !p.dTopology {
		if err := b.declareDelayTopology(ctx, s.conn); err != nil {
			return err
		}
		p.dTopology = true
	}
	if t != nil && !p.dBound[t.q.Name] {
		if _, err := b.bindDelayTargets(ctx, s.conn, []delayTarget{*t}, true); err != nil {
			return err
		}
		p.dBound[t.q.Name] = true
	}
	return nil
}

// delayFailure logs a failed delayed delivery step at WARN, and at DEBUG
// when the same step failed the same way before, so a retried failure does
// not flood the log.
func (b *Broker) delayFailure(where, msg string, err error) {
	key := "failure " + where + " " + msg
	b.mu.Lock()
	seen := b.logged[key] == err.Error()
	b.logged[key] = err.Error()
	b.mu.Unlock()
	lvl := zap.WarnLevel
	if seen {
		lvl = zap.DebugLevel
	}
	if ce := b.log.Check(lvl, "native delayed delivery: "+msg); ce != nil {
		fields := []zap.Field{zap.Error(err)}
		if where != "" {
			fields = append(fields, zap.String("url", where))
		}
		ce.Write(fields...)
	}
}

// deathHeaders are the headers RabbitMQ writes when it dead-letters a
// message. A message published again with them can be dropped by the
// broker's dead-letter cycle detection when it passes a queue they name
// (the celery_delayed_* levels, for a task retried with a countdown), so
// they are never published (Celery 5.6 filters them from retries too).
var deathHeaders = []string{
	"x-death",
	"x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
	"x-last-death-exchange", "x-last-death-queue", "x-last-death-reason",
}

// withoutDeathHeaders returns msg, or a copy of it without deathHeaders
// when it has any; msg is not modified.
func withoutDeathHeaders(msg *protocol.RawMessage) *protocol.RawMessage {
	if msg == nil {
		return nil
	}
	has := false
	for _, k := range deathHeaders {
		if _, ok := msg.Headers[k]; ok {
			has = true
			break
		}
	}
	if !has {
		return msg
	}
	cp := *msg
	cp.Headers = make(map[string]any, len(msg.Headers))
	for k, v := range msg.Headers {
		cp.Headers[k] = v
	}
	for _, k := range deathHeaders {
		delete(cp.Headers, k)
	}
	return &cp
}

// delaySetup keeps the native delayed delivery of a Broker's task
// consumers in place on every node of the failover list: the topology
// declared and the consumed queues bound. A consumer sets it up over its
// own connection when it starts and after every reconnect, and this
// retries that when it failed and does it over a connection of its own on
// every other URL of the list, in the background, until it succeeds or the
// Broker closes.
type delaySetup struct {
	b *Broker

	mu      sync.Mutex
	targets map[string]delayTarget // the consumed queues
	pending map[int]bool           // endpoints still to set up
	// announced: endpoints whose set-up was logged at INFO.
	announced map[int]bool
	running   bool
	kick      chan struct{}
	stop      chan struct{}
	done      chan struct{}
}

func newDelaySetup(b *Broker) *delaySetup {
	return &delaySetup{b: b, targets: map[string]delayTarget{}, pending: map[int]bool{}, announced: map[int]bool{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// consumed sets delayed delivery up for targets, the queues of a consumer
// that just opened on s, one of them a quorum queue: over s at once (so
// that the bindings exist when the consumer reports ready), and on every
// other endpoint in the background.
func (d *delaySetup) consumed(ctx context.Context, s *session, targets []delayTarget, log *zap.Logger) {
	d.mu.Lock()
	for _, t := range targets {
		d.targets[t.q.Name] = t
	}
	for i := range d.b.eps {
		if i != s.at {
			d.pending[i] = true
		}
	}
	d.mu.Unlock()
	ep := d.b.eps[s.at]
	n, err := d.setup(ctx, s.conn, targets, false)
	if err != nil {
		d.b.delayFailure(RedactURL(ep.raw), "cannot set up native delayed delivery; retrying in the background", err)
		d.mu.Lock()
		d.pending[s.at] = true
		d.mu.Unlock()
	} else {
		d.done1(s.at, n, log)
	}
	d.start()
}

// done1 logs a successful set-up of endpoint i: at INFO the first time, at
// DEBUG after a reconnect.
func (d *delaySetup) done1(i, bound int, log *zap.Logger) {
	d.mu.Lock()
	seen := d.announced[i]
	d.announced[i] = true
	d.mu.Unlock()
	lvl := zap.InfoLevel
	if seen {
		lvl = zap.DebugLevel
	}
	if ce := log.Check(lvl, "native delayed delivery: topology declared and queues bound"); ce != nil {
		ce.Write(zap.String("url", RedactURL(d.b.eps[i].raw)), zap.Int("bound", bound))
	}
}

// setup declares the topology over conn and binds targets.
func (d *delaySetup) setup(ctx context.Context, conn *amqp.Connection, targets []delayTarget, declare bool) (int, error) {
	if err := d.b.declareDelayTopology(ctx, conn); err != nil {
		return 0, err
	}
	return d.b.bindDelayTargets(ctx, conn, targets, declare)
}

// start runs the background loop unless it runs, and wakes it.
func (d *delaySetup) start() {
	d.mu.Lock()
	select {
	case <-d.stop:
		d.mu.Unlock()
		return
	default:
	}
	if len(d.pending) == 0 {
		d.mu.Unlock()
		return
	}
	if !d.running {
		d.running = true
		go d.run()
	}
	d.mu.Unlock()
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// close stops the loop and waits for it.
func (d *delaySetup) close() {
	d.mu.Lock()
	running := d.running
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
	d.mu.Unlock()
	if running {
		<-d.done
	}
}

func (d *delaySetup) run() {
	defer close(d.done)
	bo := backoff{min: delayRetryMin, max: delayRetryMax, rnd: rand.Float64}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-d.kick:
		case <-retry.C:
		}
		if d.attempt() {
			bo.reset()
			continue
		}
		retry.Reset(bo.next())
	}
}

// attempt sets up every pending endpoint once, each over a connection of
// its own; it reports whether none is left.
func (d *delaySetup) attempt() bool {
	d.mu.Lock()
	var eps []int
	for i := range d.pending {
		eps = append(eps, i)
	}
	targets := make([]delayTarget, 0, len(d.targets))
	for _, t := range d.targets {
		targets = append(targets, t)
	}
	d.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	left := false
	for _, i := range eps {
		ep := d.b.eps[i]
		n, err := d.setupEndpoint(ctx, ep, targets)
		if ctx.Err() != nil {
			return true
		}
		if err != nil {
			left = true
			d.b.delayFailure(RedactURL(ep.raw), "cannot set up native delayed delivery; retrying", err)
			continue
		}
		d.mu.Lock()
		delete(d.pending, i)
		d.mu.Unlock()
		d.done1(i, n, d.b.log)
	}
	return !left
}

// setupEndpoint connects to ep, declares and binds there, and disconnects.
func (d *delaySetup) setupEndpoint(ctx context.Context, ep endpoint, targets []delayTarget) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, d.b.cfg.DialTimeout+time.Minute)
	defer cancel()
	conn, err := openAMQP(ctx, d.b.cfg, ep, d.b.cfg.ConnectionName+" (delayed delivery)")
	if err != nil {
		return 0, err
	}
	defer func() {
		if err := conn.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
			d.b.log.Debug("native delayed delivery: close set-up connection", zap.Error(err))
		}
	}()
	return d.setup(ctx, conn, targets, true)
}

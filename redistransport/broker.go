package redistransport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
)

// BindingPrefix is the prefix of kombu's binding sets: the set
// "_kombu.binding.<exchange>" holds "<routing key>SEP<pattern>SEP<queue>".
const BindingPrefix = "_kombu.binding."

// Broker is a connection to a Redis broker, shared by its consumers and
// publishers. It is safe for concurrent use.
type Broker struct {
	cfg    Config
	db     int // database number, part of kombu's pub/sub channel names
	log    *zap.Logger
	client redis.UniversalClient

	mu        sync.Mutex
	closed    bool
	consumers map[*Consumer]struct{}
	// kinds are the exchanges declared so far and their kinds: Redis
	// keeps no exchanges, so, as kombu, the transport remembers them.
	kinds map[string]string
}

// Dial connects to the broker of cfg.URL. It retries with backoff until the
// first PING succeeds or ctx ends; later connection losses are repaired in
// the background.
func Dial(ctx context.Context, cfg Config) (*Broker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	client, db, err := cfg.newClient()
	if err != nil {
		return nil, err
	}
	b := &Broker{cfg: cfg, db: db, log: cfg.Logger.Named("redis"), client: client, consumers: map[*Consumer]struct{}{}, kinds: map[string]string{}}
	bo := b.backoff()
	for {
		err := client.Ping(ctx).Err()
		if err == nil {
			break
		}
		if !bo.wait(ctx) {
			_ = client.Close()
			return nil, fmt.Errorf("redistransport: connect to %s: %w", RedactURL(cfg.URL), err)
		}
		b.log.Warn("connect to Redis failed; retrying", zap.String("url", RedactURL(cfg.URL)), zap.Error(err))
	}
	return b, nil
}

// Config returns the effective configuration (transport options and
// defaults applied).
func (b *Broker) Config() Config { return b.cfg }

// Client returns the underlying go-redis client.
func (b *Broker) Client() redis.UniversalClient { return b.client }

// Close closes every consumer (restoring their unacknowledged messages)
// and the connections.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	cs := make([]*Consumer, 0, len(b.consumers))
	for c := range b.consumers {
		cs = append(cs, c)
	}
	b.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
	return b.client.Close()
}

func (b *Broker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// key applies global_keyprefix.
func (b *Broker) key(name string) string { return b.cfg.GlobalKeyPrefix + name }

// Step returns the priority step a message priority is filed under, as
// kombu's Channel.priority: the priority clamped to 0..9, then the largest
// step not above it.
func (b *Broker) Step(priority int) int {
	p := min(max(priority, 0), 9)
	steps := b.cfg.PrioritySteps
	i := sortSearchRight(steps, p) - 1
	if i < 0 {
		i = len(steps) - 1 // Python's steps[-1]
	}
	return steps[i]
}

func sortSearchRight(steps []int, p int) int {
	i := 0
	for i < len(steps) && steps[i] <= p {
		i++
	}
	return i
}

// QueueKey is the Redis list holding queue's messages of priority step
// step (without global_keyprefix): the queue name for step 0, else
// name + sep + step.
func (b *Broker) QueueKey(queue string, step int) string {
	if step == 0 {
		return queue
	}
	return fmt.Sprintf("%s%s%d", queue, b.cfg.Sep, step)
}

// Binding is the member kombu adds to the binding set of an exchange.
func (b *Broker) Binding(routingKey, pattern, queue string) string {
	return routingKey + b.cfg.Sep + pattern + b.cfg.Sep + queue
}

// DeclareTaskQueue binds queue name to the direct exchange of the same name
// with routing key name, as kombu declares Celery's task queues on Redis:
// SADD _kombu.binding.<name> "<name>SEPSEP<name>". Declaring twice is a
// no-op.
func (b *Broker) DeclareTaskQueue(ctx context.Context, name string) error {
	return b.Bind(ctx, name, name, name)
}

// Bind adds a binding of queue to exchange with routingKey.
func (b *Broker) Bind(ctx context.Context, exchange, routingKey, queue string) error {
	if queue == "" {
		return fmt.Errorf("%w: queue without a name", ErrInvalidConfig)
	}
	return b.retry(ctx, func(ctx context.Context) error {
		return b.client.SAdd(ctx, b.key(BindingPrefix+exchange), b.Binding(routingKey, "", queue)).Err()
	})
}

// Publish sends msg as kombu's Redis transport does. To an exchange
// declared (DeclareExchange) as fanout or topic it is PublishFanout.
// Otherwise the envelope (body in base64, a new delivery tag) is LPUSHed to
// the list of every queue bound to exchange with routingKey (the exchange ""
// names the queue directly), the list chosen by the message priority. A
// connection failure is retried with backoff until ctx ends, so a message
// can arrive twice. A named exchange without a matching binding gives
// ErrNoRoute.
func (b *Broker) Publish(ctx context.Context, exchange, routingKey string, msg *protocol.RawMessage) error {
	if b.pubsub(exchange) {
		return b.PublishFanout(ctx, exchange, routingKey, msg)
	}
	if b.isClosed() {
		return ErrClosed
	}
	env, err := encodeEnvelope(msg, exchange, routingKey, newTag())
	if err != nil {
		return err
	}
	step := b.Step(int(msg.Priority))
	return b.retry(ctx, func(ctx context.Context) error {
		if exchange == "" {
			if routingKey == "" {
				return fmt.Errorf("%w: empty routing key on the default exchange", ErrNoRoute)
			}
			return b.client.LPush(ctx, b.key(b.QueueKey(routingKey, step)), env).Err()
		}
		suffix := ""
		if step != 0 {
			suffix = fmt.Sprintf("%s%d", b.cfg.Sep, step)
		}
		n, err := publishScript.Run(ctx, b.client, []string{b.key(BindingPrefix + exchange)},
			routingKey, b.cfg.Sep, b.cfg.GlobalKeyPrefix, suffix, env).Int()
		if err == nil && n == 0 {
			return fmt.Errorf("%w: exchange %q, routing key %q", ErrNoRoute, exchange, routingKey)
		}
		return err
	})
}

// lookup returns the queues a restored message goes to, as kombu's
// Channel._lookup for direct exchanges. When nothing matches, the routing
// key is taken as the queue name (kombu would drop the message).
func (b *Broker) lookup(ctx context.Context, exchange, routingKey string) ([]string, error) {
	if exchange == "" {
		return []string{routingKey}, nil
	}
	members, err := b.client.SMembers(ctx, b.key(BindingPrefix+exchange)).Result()
	if err != nil {
		return nil, err
	}
	var qs []string
	for _, m := range members {
		f := strings.SplitN(m, b.cfg.Sep, 3)
		if len(f) == 3 && f[0] == routingKey && !slices.Contains(qs, f[2]) {
			qs = append(qs, f[2])
		}
	}
	if len(qs) == 0 && routingKey != "" {
		qs = []string{routingKey}
	}
	return qs, nil
}

// QueueLength returns how many messages wait in queue, over all its
// priority lists.
func (b *Broker) QueueLength(ctx context.Context, queue string) (int, error) {
	pipe := b.client.Pipeline()
	cmds := make([]*redis.IntCmd, len(b.cfg.PrioritySteps))
	for i, s := range b.cfg.PrioritySteps {
		cmds[i] = pipe.LLen(ctx, b.key(b.QueueKey(queue, s)))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return int(n), nil
}

// Unacked returns how many messages are delivered and not yet acknowledged,
// by every consumer of this Redis database and key prefix.
func (b *Broker) Unacked(ctx context.Context) (int64, error) {
	return b.client.HLen(ctx, b.key(b.cfg.UnackedKey)).Result()
}

// restoreByTag puts the unacknowledged message tag back on its queues, as
// kombu's restore_by_tag: flagged redelivered, on the plain queue list, at
// the back (leftmost, LPUSH) or the front (RPUSH). It returns whether a
// message was restored.
func (b *Broker) restoreByTag(ctx context.Context, tag string, leftmost bool) (bool, error) {
	uk, ik := b.key(b.cfg.UnackedKey), b.key(b.cfg.UnackedIndexKey)
	for range 5 {
		cur, err := b.client.HGet(ctx, uk, tag).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return false, err
		}
		keys := []string{uk, ik}
		var payload []byte
		if cur != "" {
			item, ex, rk, perr := parseUnackedEntry([]byte(cur))
			var qs []string
			if perr == nil {
				qs, err = b.lookup(ctx, ex, rk)
				if err != nil {
					return false, err
				}
			}
			if perr != nil || len(qs) == 0 {
				b.log.Error("unacked entry cannot be restored; moved to the dead-letter list",
					zap.String("tag", tag), zap.String("list", b.cfg.DeadLetterKey), zap.Error(perr))
				return false, asideScript.Run(ctx, b.client, []string{uk, ik, b.key(b.cfg.DeadLetterKey)}, tag, cur).Err()
			}
			payload = markRedelivered(item)
			for _, q := range qs {
				keys = append(keys, b.key(q))
			}
		}
		lm := "0"
		if leftmost {
			lm = "1"
		}
		n, err := restoreScript.Run(ctx, b.client, keys, tag, cur, payload, lm).Int()
		if err != nil {
			return false, err
		}
		if n >= 0 {
			return n == 1, nil
		}
	}
	return false, fmt.Errorf("redistransport: unacked entry %s kept changing", tag)
}

// RestoreVisible restores the unacknowledged messages older than the
// visibility timeout (their consumer is presumed dead), under kombu's
// unacked_mutex so that one consumer at a time does it, at most
// UnackedRestoreLimit per pass. Tags for which skip returns true are left
// alone. It returns how many messages were restored; 0 when another
// consumer holds the mutex.
func (b *Broker) RestoreVisible(ctx context.Context, skip func(tag string) bool) (int, error) {
	mk := b.key(b.cfg.UnackedMutexKey)
	token := newTag()
	ok, err := b.client.SetNX(ctx, mk, token, b.cfg.UnackedMutexExpire).Result()
	if err != nil || !ok {
		return 0, err
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = unlockScript.Run(uctx, b.client, []string{mk}, token).Err()
	}()
	ceil := float64(time.Now().Add(-b.cfg.VisibilityTimeout).UnixMicro()) / 1e6
	rng := &redis.ZRangeBy{Max: fmt.Sprintf("%f", ceil), Min: "0"}
	if b.cfg.UnackedRestoreLimit > 0 {
		rng.Count = int64(b.cfg.UnackedRestoreLimit)
	}
	tags, err := b.client.ZRevRangeByScore(ctx, b.key(b.cfg.UnackedIndexKey), rng).Result()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range tags {
		if skip != nil && skip(t) {
			continue
		}
		ok, err := b.restoreByTag(ctx, t, false)
		if err != nil {
			return n, err
		}
		if ok {
			n++
			b.log.Info("restored a message unacknowledged for longer than the visibility timeout", zap.String("tag", t))
		}
	}
	return n, nil
}

// retry runs op until it succeeds, fails with an error a retry cannot
// fix, or ctx ends; connection errors are retried with backoff.
func (b *Broker) retry(ctx context.Context, op func(context.Context) error) error {
	bo := b.backoff()
	for {
		err := op(ctx)
		if err == nil || !retryable(err) {
			return err
		}
		if b.isClosed() {
			return fmt.Errorf("%w: %v", ErrClosed, err)
		}
		b.log.Warn("Redis command failed; retrying", zap.Error(err))
		if !bo.wait(ctx) {
			return err
		}
	}
}

// retryable reports whether err is a connection problem (or a server in
// the middle of a failover) rather than an answer.
func retryable(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, redis.ErrClosed) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		var ne net.Error
		if errors.As(err, &ne) {
			return true
		}
		msg := re.Error()
		for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	return !errors.Is(err, ErrNoRoute) && !errors.Is(err, ErrInvalidMessage) && !errors.Is(err, ErrInvalidConfig)
}

type backoff struct {
	cur, max time.Duration
}

func (b *Broker) backoff() *backoff {
	return &backoff{cur: b.cfg.ReconnectMin, max: b.cfg.ReconnectMax}
}

// wait sleeps for the current delay, jittered to half or more of it, and
// doubles it; false when ctx ended first.
func (bo *backoff) wait(ctx context.Context) bool {
	d := bo.cur/2 + rand.N(bo.cur/2+1)
	bo.cur = min(bo.cur*2, bo.max)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// PurgeQueue deletes the waiting messages of queue (every priority list)
// and returns how many there were, as kombu's queue_purge.
func (b *Broker) PurgeQueue(ctx context.Context, queue string) (int, error) {
	var n int64
	err := b.retry(ctx, func(ctx context.Context) error {
		n = 0
		pipe := b.client.TxPipeline()
		lens := make([]*redis.IntCmd, len(b.cfg.PrioritySteps))
		for i, s := range b.cfg.PrioritySteps {
			k := b.key(b.QueueKey(queue, s))
			lens[i] = pipe.LLen(ctx, k)
			pipe.Del(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		for _, l := range lens {
			n += l.Val()
		}
		return nil
	})
	return int(n), err
}

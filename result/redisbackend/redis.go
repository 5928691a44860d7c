// Package redisbackend is Celery's Redis result backend
// (result_backend = "redis://..."), wire-compatible with Celery 5.2.6:
// task results under celery-task-meta-<id>, saved groups under
// celery-taskset-meta-<gid>, chord counters under
// celery-taskset-meta-<gid>.j/.t/.s, and every write followed by a PUBLISH
// on the key name, which is what Python's AsyncResult.get() waits on.
//
// A Backend implements result.Backend, result.GroupStore,
// result.NativeJoiner and result.ChordBackend.
package redisbackend

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/gworker/gworker/config"
	"github.com/gworker/gworker/internal/redact"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// Default key prefixes, as Celery names them.
const (
	DefaultKeyPrefix      = "celery-task-meta-"
	DefaultGroupKeyPrefix = "celery-taskset-meta-"
	// DefaultExpires is Celery's result_expires: one day
	// (config.DefaultResultExpires).
	DefaultExpires = config.DefaultResultExpires
)

// Options configures a Backend. The zero value is Celery's default.
type Options struct {
	// Expires is the TTL of every key written (result_expires). Zero means
	// DefaultExpires; a negative value means no expiry (plain SET), as
	// does NoExpiry.
	Expires time.Duration
	// NoExpiry writes keys without a TTL (Celery's result_expires=None).
	NoExpiry bool
	// KeyPrefix prefixes task result keys (default DefaultKeyPrefix).
	KeyPrefix string
	// GroupKeyPrefix prefixes saved groups and chord keys (default
	// DefaultGroupKeyPrefix).
	GroupKeyPrefix string
	// Logger receives debug and warning logs (default: none).
	Logger *zap.Logger
	// NoBatching sends every Store on a round trip of its own. By default
	// Stores made concurrently are coalesced into pipelines; each result
	// is written by the same atomic script either way.
	NoBatching bool
}

// Backend is the Redis result backend. It is safe for concurrent use.
type Backend struct {
	client      redis.UniversalClient
	ownsClient  bool
	ttl         time.Duration // 0: no expiry
	prefix      string
	groupPrefix string
	log         *zap.Logger
	noBatching  bool
	batch       batcher
}

var (
	_ result.Backend      = (*Backend)(nil)
	_ result.GroupStore   = (*Backend)(nil)
	_ result.NativeJoiner = (*Backend)(nil)
	_ result.ChordBackend = (*Backend)(nil)
)

// New returns a backend that uses client. Closing the client is the
// caller's job.
func New(client redis.UniversalClient, opts Options) *Backend {
	b := &Backend{
		client:      client,
		ttl:         opts.Expires,
		prefix:      opts.KeyPrefix,
		groupPrefix: opts.GroupKeyPrefix,
		log:         opts.Logger,
		noBatching:  opts.NoBatching,
	}
	if b.ttl == 0 {
		b.ttl = DefaultExpires
	}
	if b.ttl < 0 || opts.NoExpiry {
		b.ttl = 0
	}
	if b.prefix == "" {
		b.prefix = DefaultKeyPrefix
	}
	if b.groupPrefix == "" {
		b.groupPrefix = DefaultGroupKeyPrefix
	}
	if b.log == nil {
		b.log = zap.NewNop()
	}
	return b
}

// Open connects to the Redis server of url (redis://[:password@]host:port/db
// or rediss:// for TLS) and returns a backend that owns the connection;
// Close releases it. Open does not contact the server.
//
// The connection speaks RESP2, as Celery's redis-py does, unless the URL
// asks for another protocol (protocol=3): on RESP3 the client looks for
// push notifications before reading every reply, which a result backend
// never receives.
func Open(url string, opts Options) (*Backend, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redisbackend: %w", redact.Error(err, url))
	}
	if o.Protocol == 0 {
		o.Protocol = 2
	}
	b := New(redis.NewClient(o), opts)
	b.ownsClient = true
	return b, nil
}

// Close closes the client if Open created it.
func (b *Backend) Close() error {
	if b.ownsClient {
		return b.client.Close()
	}
	return nil
}

// Client returns the underlying Redis client.
func (b *Backend) Client() redis.UniversalClient { return b.client }

// TaskKey returns the key of a task's result.
func (b *Backend) TaskKey(taskID string) string { return b.prefix + taskID }

// GroupKey returns the key of a saved group.
func (b *Backend) GroupKey(groupID string) string { return b.groupPrefix + groupID }

// storeScript is the atomic form of Celery's write sequence: read the
// current value, keep it if its status is SUCCESS, otherwise SETEX (or SET)
// and PUBLISH the new value on the key name. The status is read with cjson,
// with a prefix match as the fallback for values cjson cannot parse (NaN,
// huge numbers).
var storeScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, dec = pcall(cjson.decode, cur)
  if ok and type(dec) == 'table' then
    if dec['status'] == 'SUCCESS' then return 0 end
  elseif string.find(cur, '^%s*{%s*"status"%s*:%s*"SUCCESS"') then
    return 0
  end
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SETEX', KEYS[1], ttl, ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
`)

func (b *Backend) ttlSeconds() int64 {
	if b.ttl <= 0 {
		return 0
	}
	s := int64(math.Ceil(b.ttl.Seconds()))
	if s < 1 {
		s = 1
	}
	return s
}

// Store writes a task's state as Celery does: the value bytes are
// result.EncodeMeta's, written with SETEX (SET without expiry) and
// published on the key name, unless the stored state is already SUCCESS
// (checked atomically; the write is then skipped and Store returns nil).
// Concurrent Stores share pipelines unless Options.NoBatching is set; a
// Store queued behind the pipeline in flight then waits for it even if ctx
// ends (the client's read and write timeouts bound that wait), and is sent
// without ctx's cancellation so that one caller giving up cannot fail the
// others' writes.
func (b *Backend) Store(ctx context.Context, m *result.Meta) error {
	val, err := result.EncodeMeta(m)
	if err != nil {
		return err
	}
	key := b.TaskKey(m.TaskID)
	if !b.noBatching {
		r := newStoreReq(m.TaskID, key, string(m.Status), val)
		err := b.storeBatched(ctx, r)
		r.release()
		return err
	}
	n, err := storeScript.Run(ctx, b.client, []string{key}, val, b.ttlSeconds()).Int64()
	if err != nil {
		return fmt.Errorf("redisbackend: store %s: %w", m.TaskID, err)
	}
	if n == 0 {
		b.log.Debug("result not stored: task already succeeded",
			zap.String("task_id", m.TaskID), zap.String("state", string(m.Status)))
	}
	return nil
}

// StoreMany stores several results in one round trip (a pipeline of the
// same atomic script Store runs). Every meta is attempted; the first error
// is returned.
func (b *Backend) StoreMany(ctx context.Context, metas []*result.Meta) error {
	if len(metas) == 0 {
		return nil
	}
	vals := make([][]byte, len(metas))
	for i, m := range metas {
		v, err := result.EncodeMeta(m)
		if err != nil {
			return err
		}
		vals[i] = v
	}
	run := func() ([]redis.Cmder, error) {
		return b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, m := range metas {
				storeScript.EvalSha(ctx, p, []string{b.TaskKey(m.TaskID)}, vals[i], b.ttlSeconds())
			}
			return nil
		})
	}
	cmds, err := run()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if lerr := storeScript.Load(ctx, b.client).Err(); lerr != nil {
			return fmt.Errorf("redisbackend: load store script: %w", lerr)
		}
		cmds, err = run()
	}
	if err != nil {
		for i, c := range cmds {
			if c.Err() != nil {
				return fmt.Errorf("redisbackend: store %s: %w", metas[i].TaskID, c.Err())
			}
		}
		return fmt.Errorf("redisbackend: store: %w", err)
	}
	return nil
}

// Get returns the stored meta of a task, or a PENDING meta when there is
// none. A value that is not a valid meta is an error wrapping
// result.ErrBadMeta.
func (b *Backend) Get(ctx context.Context, taskID string) (*result.Meta, error) {
	val, err := b.client.Get(ctx, b.TaskKey(taskID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return pending(taskID), nil
	}
	if err != nil {
		return nil, fmt.Errorf("redisbackend: get %s: %w", taskID, err)
	}
	return decode(taskID, val)
}

func pending(taskID string) *result.Meta {
	return &result.Meta{TaskID: taskID, Status: result.Pending}
}

func decode(taskID string, val []byte) (*result.Meta, error) {
	m, err := result.DecodeMeta(val)
	if err != nil {
		return nil, fmt.Errorf("redisbackend: task %s: %w", taskID, err)
	}
	if m.TaskID == "" {
		m.TaskID = taskID
	}
	return m, nil
}

// Forget deletes a task's result.
func (b *Backend) Forget(ctx context.Context, taskID string) error {
	if err := b.client.Del(ctx, b.TaskKey(taskID)).Err(); err != nil {
		return fmt.Errorf("redisbackend: forget %s: %w", taskID, err)
	}
	return nil
}

// set writes key with the backend's TTL and publishes the value on the key
// name, in one MULTI/EXEC, as Celery's RedisBackend.set does.
func (b *Backend) set(ctx context.Context, key string, val any) error {
	_, err := b.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if b.ttl > 0 {
			p.SetEx(ctx, key, val, time.Duration(b.ttlSeconds())*time.Second)
		} else {
			p.Set(ctx, key, val, 0)
		}
		p.Publish(ctx, key, val)
		return nil
	})
	return err
}

// SaveGroup stores {"result": tuple} under celery-taskset-meta-<gid>.
func (b *Backend) SaveGroup(ctx context.Context, groupID string, tuple any) error {
	if err := protocol.CheckID(groupID); err != nil {
		return fmt.Errorf("redisbackend: group id: %w", err)
	}
	val, err := protocol.MarshalJSON(protocol.Dict{{Key: "result", Value: tuple}})
	if err != nil {
		return fmt.Errorf("redisbackend: save group %s: %w", groupID, err)
	}
	if err := b.set(ctx, b.GroupKey(groupID), val); err != nil {
		return fmt.Errorf("redisbackend: save group %s: %w", groupID, err)
	}
	return nil
}

// RestoreGroup returns the tuple saved for groupID, or an error wrapping
// result.ErrGroupNotFound.
func (b *Backend) RestoreGroup(ctx context.Context, groupID string) (any, error) {
	val, err := b.client.Get(ctx, b.GroupKey(groupID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: %s", result.ErrGroupNotFound, groupID)
	}
	if err != nil {
		return nil, fmt.Errorf("redisbackend: restore group %s: %w", groupID, err)
	}
	v, err := protocol.UnmarshalJSON(val)
	if err != nil {
		return nil, fmt.Errorf("redisbackend: group %s: %w: %w", groupID, result.ErrBadTuple, err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("redisbackend: group %s: %w: not an object", groupID, result.ErrBadTuple)
	}
	t, ok := obj["result"]
	if !ok || t == nil {
		return nil, fmt.Errorf("redisbackend: group %s: %w: no \"result\"", groupID, result.ErrBadTuple)
	}
	return t, nil
}

// DeleteGroup deletes a saved group.
func (b *Backend) DeleteGroup(ctx context.Context, groupID string) error {
	if err := b.client.Del(ctx, b.GroupKey(groupID)).Err(); err != nil {
		return fmt.Errorf("redisbackend: delete group %s: %w", groupID, err)
	}
	return nil
}

// SetChordSize writes celery-taskset-meta-<gid>.s = size (with TTL) and
// publishes it, as a Celery client does before sending the last header
// task of a chord.
func (b *Backend) SetChordSize(ctx context.Context, groupID string, size int) error {
	if err := protocol.CheckID(groupID); err != nil {
		return fmt.Errorf("redisbackend: group id: %w", err)
	}
	if size < 0 {
		return fmt.Errorf("redisbackend: chord %s: negative size %d", groupID, size)
	}
	if err := b.set(ctx, b.GroupKey(groupID)+".s", strconv.Itoa(size)); err != nil {
		return fmt.Errorf("redisbackend: chord %s size: %w", groupID, err)
	}
	return nil
}

// AddToChord counts one more header part of the chord of groupID, as
// Celery's add_to_chord does: INCR celery-taskset-meta-<gid>.t (with
// TTL); AddChordPart then waits for int(.s) + int(.t) parts.
func (b *Backend) AddToChord(ctx context.Context, groupID string) error {
	if err := protocol.CheckID(groupID); err != nil {
		return fmt.Errorf("redisbackend: group id: %w", err)
	}
	key := b.GroupKey(groupID) + ".t"
	_, err := b.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, key)
		if b.ttl > 0 {
			p.Expire(ctx, key, time.Duration(b.ttlSeconds())*time.Second)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redisbackend: add to chord %s: %w", groupID, err)
	}
	return nil
}

// AddChordPart records a finished chord header part as Celery's
// on_chord_part_return does: in one MULTI/EXEC, ZADD the part
// [1, task_id, state, result] to <gid>.j scored by its group index (+inf
// when nil), count the parts, read <gid>.t and <gid>.s and refresh the
// three keys' TTL. The chord is complete when the count equals
// int(.s) + int(.t or 0); the parts are then read back in header order and
// the three keys deleted. Without a .s key the part is recorded and the
// chord never completes (as in Celery).
//
// A chord whose header is a saved group (celery-taskset-meta-<gid> exists)
// must be joined through that group by the caller; the parts returned
// are the flat list.
func (b *Backend) AddChordPart(ctx context.Context, groupID string, groupIndex *int, part result.ChordPart) (bool, []result.ChordPart, error) {
	if err := protocol.CheckID(groupID); err != nil {
		return false, nil, fmt.Errorf("redisbackend: group id: %w", err)
	}
	member, err := protocol.MarshalJSON([]any{int64(1), part.TaskID, string(part.Status), result.StoredResult(part.Status, part.Result)})
	if err != nil {
		return false, nil, fmt.Errorf("redisbackend: chord %s part %s: %w", groupID, part.TaskID, err)
	}
	score := math.Inf(1)
	if groupIndex != nil {
		score = float64(*groupIndex)
	}
	base := b.GroupKey(groupID)
	jkey, tkey, skey := base+".j", base+".t", base+".s"
	var (
		count      *redis.IntCmd
		tval, sval *redis.StringCmd
	)
	_, err = b.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, jkey, redis.Z{Score: score, Member: member})
		count = p.ZCount(ctx, jkey, "-inf", "+inf")
		tval = p.Get(ctx, tkey)
		sval = p.Get(ctx, skey)
		if b.ttl > 0 {
			exp := time.Duration(b.ttlSeconds()) * time.Second
			p.Expire(ctx, jkey, exp)
			p.Expire(ctx, tkey, exp)
			p.Expire(ctx, skey, exp)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, nil, fmt.Errorf("redisbackend: chord %s part %s: %w", groupID, part.TaskID, err)
	}
	sizeStr, err := sval.Result()
	if errors.Is(err, redis.Nil) {
		b.log.Debug("chord part recorded without a chord size",
			zap.String("group_id", groupID), zap.String("task_id", part.TaskID))
		return false, nil, nil
	}
	if err != nil {
		return false, nil, fmt.Errorf("redisbackend: chord %s size: %w", groupID, err)
	}
	size, err := strconv.ParseInt(strings.TrimSpace(sizeStr), 10, 64)
	if err != nil {
		return false, nil, fmt.Errorf("redisbackend: chord %s: bad size %q", groupID, sizeStr)
	}
	var extra int64
	if t, err := tval.Result(); err == nil {
		extra, err = strconv.ParseInt(strings.TrimSpace(t), 10, 64)
		if err != nil {
			return false, nil, fmt.Errorf("redisbackend: chord %s: bad .t value %q", groupID, t)
		}
	} else if !errors.Is(err, redis.Nil) {
		return false, nil, fmt.Errorf("redisbackend: chord %s .t: %w", groupID, err)
	}
	if count.Val() != size+extra {
		return false, nil, nil
	}
	members, err := b.client.ZRange(ctx, jkey, 0, -1).Result()
	if err != nil {
		return false, nil, fmt.Errorf("redisbackend: chord %s parts: %w", groupID, err)
	}
	parts := make([]result.ChordPart, 0, len(members))
	for _, s := range members {
		p, err := decodePart(s)
		if err != nil {
			return false, nil, fmt.Errorf("redisbackend: chord %s: %w", groupID, err)
		}
		parts = append(parts, p)
	}
	if err := b.client.Del(ctx, jkey, tkey, skey).Err(); err != nil {
		return true, parts, fmt.Errorf("redisbackend: chord %s cleanup: %w", groupID, err)
	}
	return true, parts, nil
}

func decodePart(s string) (result.ChordPart, error) {
	v, err := protocol.UnmarshalJSON([]byte(s))
	if err != nil {
		return result.ChordPart{}, fmt.Errorf("bad chord part %q: %w", s, err)
	}
	l, ok := v.([]any)
	if !ok || len(l) != 4 {
		return result.ChordPart{}, fmt.Errorf("bad chord part %q: want [1, id, state, result]", s)
	}
	id, ok1 := l[1].(string)
	st, ok2 := l[2].(string)
	if !ok1 || !ok2 {
		return result.ChordPart{}, fmt.Errorf("bad chord part %q: id and state must be strings", s)
	}
	return result.ChordPart{TaskID: id, Status: result.State(st), Result: l[3]}, nil
}

// redeliveryPrefix is the key prefix of the worker's redelivery counters.
const redeliveryPrefix = "gworker-redeliveries-"

// CountRedelivery increments the redelivery counter of key (INCR, with the
// result expiry, one day when results never expire) and returns it; see
// result.RedeliveryCounter.
func (b *Backend) CountRedelivery(ctx context.Context, key string) (int64, error) {
	ttl := b.ttl
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	k := redeliveryPrefix + key
	pipe := b.client.TxPipeline()
	incr := pipe.Incr(ctx, k)
	pipe.Expire(ctx, k, ttl)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("redisbackend: count redelivery of %s: %w", key, err)
	}
	return incr.Val(), nil
}

// Schemes are the result backend URL schemes this backend serves.
var Schemes = []string{"redis", "rediss"}

// OpenBackend is the result.Opener of the Redis backend.
func OpenBackend(_ context.Context, url string, o result.OpenOptions) (result.Backend, error) {
	opts := Options{Expires: o.Expires, Logger: o.Logger}
	if o.Expires < 0 {
		opts.Expires, opts.NoExpiry = 0, true
	}
	b, err := Open(url, opts)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Register registers OpenBackend for Schemes in r.
func Register(r *result.Registry) { r.Register(OpenBackend, Schemes...) }

package gworkertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// Backend is an in-memory result backend that behaves as the Redis backend
// does: it stores the exact JSON result.EncodeMeta writes (what Celery
// stores under celery-task-meta-<id>) and decodes it on every read, so a
// test sees the values Python would see (int64, float64, []any,
// map[string]any...), never the Go values the task returned. A stored
// SUCCESS is never overwritten.
//
// It implements result.Backend, result.GroupStore, result.NativeJoiner
// (AsyncResult.Get and JoinNative wait on it without polling),
// result.ChordBackend (chord header parts are counted as on Redis) and
// result.RedeliveryCounter. It is
// safe for concurrent use; the zero value is not usable, call NewBackend.
type Backend struct {
	mu       sync.Mutex
	tasks    map[string][]byte
	groups   map[string][]byte
	chords   map[string]*chordState
	watchers map[*watcher]struct{}
	counters map[string]int64
	down     error // set during an outage
}

var (
	_ result.Backend      = (*Backend)(nil)
	_ result.GroupStore   = (*Backend)(nil)
	_ result.NativeJoiner = (*Backend)(nil)
	_ result.ChordBackend = (*Backend)(nil)

	_ result.RedeliveryCounter = (*Backend)(nil)
)

type chordState struct {
	size  int
	sized bool
	extra int // parts added by AddToChord
	parts []chordMember
}

// chordMember is one recorded header part, ordered as in Redis's sorted
// set: by score (the group index, +inf when unknown), then by member bytes.
type chordMember struct {
	score  float64
	member []byte // JSON [1, id, state, result]
}

// watcher is one WaitReady in progress: it is told the ids written.
type watcher struct {
	ids map[string]bool
	ch  chan string
}

// ErrUnavailable is wrapped by the errors of a Backend during an outage
// (see SetOutage).
var ErrUnavailable = errors.New("gworkertest: result backend unavailable")

// SetOutage starts an outage when down is true: every call fails with an
// error wrapping ErrUnavailable, as a Redis backend fails while its server
// is unreachable, until SetOutage(false). Stored values are kept.
func (b *Backend) SetOutage(down bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if down {
		b.down = ErrUnavailable
	} else {
		b.down = nil
	}
}

// usable returns ctx's error or the outage's.
func (b *Backend) usable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down != nil {
		return fmt.Errorf("%w (outage)", b.down)
	}
	return nil
}

// NewBackend returns an empty backend.
func NewBackend() *Backend {
	return &Backend{
		tasks:    map[string][]byte{},
		groups:   map[string][]byte{},
		chords:   map[string]*chordState{},
		watchers: map[*watcher]struct{}{},
		counters: map[string]int64{},
	}
}

// Store encodes m as Celery stores it and keeps it, unless the task's
// stored state is already SUCCESS (Store then returns nil and keeps the
// success). A value that cannot be encoded fails with the encoder's error
// (a *protocol.EncodeError), as on Redis.
func (b *Backend) Store(ctx context.Context, m *result.Meta) error {
	if err := b.usable(ctx); err != nil {
		return err
	}
	val, err := result.EncodeMeta(m)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if cur, ok := b.tasks[m.TaskID]; ok {
		if old, err := result.DecodeMeta(cur); err == nil && old.Status == result.Success {
			return nil
		}
	}
	b.tasks[m.TaskID] = val
	for w := range b.watchers {
		if w.ids[m.TaskID] {
			select {
			case w.ch <- m.TaskID:
			default: // the watcher rereads every pending id when it wakes
			}
		}
	}
	return nil
}

// Get returns the stored meta, decoded from its JSON, or a PENDING meta.
func (b *Backend) Get(ctx context.Context, taskID string) (*result.Meta, error) {
	if err := b.usable(ctx); err != nil {
		return nil, err
	}
	b.mu.Lock()
	val, ok := b.tasks[taskID]
	b.mu.Unlock()
	if !ok {
		return &result.Meta{TaskID: taskID, Status: result.Pending}, nil
	}
	return decodeMeta(taskID, val)
}

func decodeMeta(taskID string, val []byte) (*result.Meta, error) {
	m, err := result.DecodeMeta(val)
	if err != nil {
		return nil, fmt.Errorf("gworkertest: task %s: %w", taskID, err)
	}
	if m.TaskID == "" {
		m.TaskID = taskID
	}
	return m, nil
}

// Forget deletes a task's result.
func (b *Backend) Forget(ctx context.Context, taskID string) error {
	if err := b.usable(ctx); err != nil {
		return err
	}
	b.mu.Lock()
	delete(b.tasks, taskID)
	b.mu.Unlock()
	return nil
}

// Raw returns the JSON stored for a task, as Redis would hold it under
// celery-task-meta-<id>.
func (b *Backend) Raw(taskID string) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.tasks[taskID]
	return slices.Clone(v), ok
}

// TaskIDs returns the ids of the stored results, sorted.
func (b *Backend) TaskIDs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	ids := make([]string, 0, len(b.tasks))
	for id := range b.tasks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// SaveGroup stores {"result": tuple} as JSON, as Celery does.
func (b *Backend) SaveGroup(ctx context.Context, groupID string, tuple any) error {
	if err := b.usable(ctx); err != nil {
		return err
	}
	val, err := protocol.MarshalJSON(protocol.Dict{{Key: "result", Value: tuple}})
	if err != nil {
		return fmt.Errorf("gworkertest: save group %s: %w", groupID, err)
	}
	b.mu.Lock()
	b.groups[groupID] = val
	b.mu.Unlock()
	return nil
}

// RestoreGroup returns the decoded tuple saved for groupID, or an error
// wrapping result.ErrGroupNotFound.
func (b *Backend) RestoreGroup(ctx context.Context, groupID string) (any, error) {
	if err := b.usable(ctx); err != nil {
		return nil, err
	}
	b.mu.Lock()
	val, ok := b.groups[groupID]
	b.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %s", result.ErrGroupNotFound, groupID)
	}
	v, err := protocol.UnmarshalJSON(val)
	if err != nil {
		return nil, fmt.Errorf("gworkertest: group %s: %w: %w", groupID, result.ErrBadTuple, err)
	}
	obj, ok := v.(map[string]any)
	if !ok || obj["result"] == nil {
		return nil, fmt.Errorf("gworkertest: group %s: %w: no \"result\"", groupID, result.ErrBadTuple)
	}
	return obj["result"], nil
}

// DeleteGroup deletes a saved group.
func (b *Backend) DeleteGroup(ctx context.Context, groupID string) error {
	if err := b.usable(ctx); err != nil {
		return err
	}
	b.mu.Lock()
	delete(b.groups, groupID)
	b.mu.Unlock()
	return nil
}

// SetChordSize records the number of header parts of the chord groupID.
func (b *Backend) SetChordSize(ctx context.Context, groupID string, size int) error {
	if err := b.usable(ctx); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("gworkertest: chord %s: negative size %d", groupID, size)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.chord(groupID)
	c.size, c.sized = size, true
	return nil
}

func (b *Backend) chord(groupID string) *chordState {
	c := b.chords[groupID]
	if c == nil {
		c = &chordState{}
		b.chords[groupID] = c
	}
	return c
}

// AddToChord counts one more part of the chord of groupID, as the Redis
// backend's INCR of <gid>.t (result.ChordExtender).
func (b *Backend) AddToChord(ctx context.Context, groupID string) error {
	if err := b.usable(ctx); err != nil {
		return err
	}
	b.mu.Lock()
	b.chord(groupID).extra++
	b.mu.Unlock()
	return nil
}

// AddChordPart records a finished header part as the Redis backend does:
// the part is stored as the JSON [1, task_id, state, result], ordered by
// its group index; when the count reaches the chord's size the parts are
// returned, decoded, in header order, and the chord's bookkeeping is
// removed. Without a size the part is recorded and the chord never
// completes.
func (b *Backend) AddChordPart(ctx context.Context, groupID string, groupIndex *int, part result.ChordPart) (bool, []result.ChordPart, error) {
	if err := b.usable(ctx); err != nil {
		return false, nil, err
	}
	member, err := protocol.MarshalJSON([]any{int64(1), part.TaskID, string(part.Status), result.StoredResult(part.Status, part.Result)})
	if err != nil {
		return false, nil, fmt.Errorf("gworkertest: chord %s part %s: %w", groupID, part.TaskID, err)
	}
	score := math.Inf(1)
	if groupIndex != nil {
		score = float64(*groupIndex)
	}
	b.mu.Lock()
	c := b.chord(groupID)
	// A sorted set holds a member once.
	if !slices.ContainsFunc(c.parts, func(p chordMember) bool { return bytes.Equal(p.member, member) }) {
		c.parts = append(c.parts, chordMember{score: score, member: member})
	}
	if !c.sized || len(c.parts) != c.size+c.extra {
		b.mu.Unlock()
		return false, nil, nil
	}
	members := slices.Clone(c.parts)
	delete(b.chords, groupID)
	b.mu.Unlock()

	slices.SortStableFunc(members, func(x, y chordMember) int {
		if x.score != y.score {
			if x.score < y.score {
				return -1
			}
			return 1
		}
		return bytes.Compare(x.member, y.member)
	})
	parts := make([]result.ChordPart, 0, len(members))
	for _, m := range members {
		p, err := decodePart(m.member)
		if err != nil {
			return false, nil, fmt.Errorf("gworkertest: chord %s: %w", groupID, err)
		}
		parts = append(parts, p)
	}
	return true, parts, nil
}

func decodePart(s []byte) (result.ChordPart, error) {
	v, err := protocol.UnmarshalJSON(s)
	if err != nil {
		return result.ChordPart{}, fmt.Errorf("bad chord part %q: %w", s, err)
	}
	l, ok := v.([]any)
	if !ok || len(l) != 4 {
		return result.ChordPart{}, fmt.Errorf("bad chord part %q", s)
	}
	id, _ := l[1].(string)
	st, _ := l[2].(string)
	return result.ChordPart{TaskID: id, Status: result.State(st), Result: l[3]}, nil
}

// WaitReady calls fn once per distinct id with its meta when it is ready,
// and returns when all were reported or ctx ends. It registers for writes
// before reading what is stored, so no result is missed.
func (b *Backend) WaitReady(ctx context.Context, ids []string, fn func(*result.Meta)) error {
	if fn == nil {
		fn = func(*result.Meta) {}
	}
	pending := make(map[string]bool, len(ids))
	for _, id := range ids {
		pending[id] = true
	}
	if len(pending) == 0 {
		return nil
	}
	if err := b.usable(ctx); err != nil {
		return err
	}
	w := &watcher{ids: pending, ch: make(chan string, 1)}
	b.mu.Lock()
	b.watchers[w] = struct{}{}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.watchers, w)
		b.mu.Unlock()
	}()
	// check reads every pending id; a wake-up may stand for several
	// writes, since the channel holds one.
	check := func() error {
		b.mu.Lock()
		vals := make(map[string][]byte, len(pending))
		for id := range pending {
			if v, ok := b.tasks[id]; ok {
				vals[id] = v
			}
		}
		b.mu.Unlock()
		ready := make([]string, 0, len(vals))
		for _, id := range ids {
			if _, ok := vals[id]; ok && !slices.Contains(ready, id) {
				ready = append(ready, id)
			}
		}
		for _, id := range ready {
			m, err := decodeMeta(id, vals[id])
			if err != nil {
				return err
			}
			if !m.Status.Ready() {
				continue
			}
			m.TaskID = id
			b.mu.Lock()
			delete(pending, id)
			b.mu.Unlock()
			fn(m)
		}
		return nil
	}
	for {
		if err := check(); err != nil {
			return err
		}
		b.mu.Lock()
		left := len(pending)
		b.mu.Unlock()
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.ch:
		}
	}
}

// CountRedelivery adds one to the counter of key and returns it (see
// result.RedeliveryCounter).
func (b *Backend) CountRedelivery(ctx context.Context, key string) (int64, error) {
	if err := b.usable(ctx); err != nil {
		return 0, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.counters[key]++
	return b.counters[key], nil
}

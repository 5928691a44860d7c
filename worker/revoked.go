package worker

import (
	"container/heap"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of a RevokedSet, as Celery's worker_state.revoked.
const (
	DefaultRevokedMax     = 50000
	DefaultRevokedExpires = 3 * time.Hour
)

// RevokedSet holds the ids of revoked tasks, as Celery's LimitedSet: at most
// Max ids, each kept for Expires after it was added; when full, the oldest
// ids make room. Like LimitedSet it keeps a heap ordered by time beside the
// map, so adding an id and purging the expired and oldest ones cost
// O(log n) each, and a merge of many ids is one pass. It is safe for
// concurrent use, and Contains is cheap while the set is empty.
type RevokedSet struct {
	max     int
	expires time.Duration
	now     func() time.Time

	n  atomic.Int64 // len(ids), for the lock-free empty check
	mu sync.Mutex
	// ids maps an id to the time it was added.
	ids map[string]time.Time
	// byTime holds an entry per addition, oldest first; an entry whose
	// time is no longer its id's (renewed, or purged) is stale and
	// skipped when it comes to the top.
	byTime revokedHeap
}

type revokedEntry struct {
	at time.Time
	id string
}

type revokedHeap []revokedEntry

func (h revokedHeap) Len() int           { return len(h) }
func (h revokedHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h revokedHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *revokedHeap) Push(x any)        { *h = append(*h, x.(revokedEntry)) }
func (h *revokedHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// NewRevokedSet returns an empty set; max <= 0 and expires <= 0 take the
// defaults.
func NewRevokedSet(max int, expires time.Duration) *RevokedSet {
	if max <= 0 {
		max = DefaultRevokedMax
	}
	if expires <= 0 {
		expires = DefaultRevokedExpires
	}
	return &RevokedSet{max: max, expires: expires, now: time.Now, ids: map[string]time.Time{}}
}

// Add adds ids (or renews them) as revoked now.
func (s *RevokedSet) Add(ids ...string) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		s.setLocked(id, now)
	}
	s.purgeLocked(now)
}

// AddAt adds id as revoked at the given time (merging another node's set);
// an id already known keeps its later time. Ids older than the expiry are
// ignored.
func (s *RevokedSet) AddAt(id string, at time.Time) {
	s.AddAll(map[string]time.Time{id: at})
}

// AddAll merges ids with the times they were revoked, in one pass, as
// AddAt does for each: a known id keeps its later time, and ids older than
// the expiry are ignored.
func (s *RevokedSet) AddAll(entries map[string]time.Time) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, at := range entries {
		if now.Sub(at) > s.expires {
			continue
		}
		if old, ok := s.ids[id]; !ok || at.After(old) {
			s.setLocked(id, at)
		}
	}
	s.purgeLocked(now)
}

// setLocked records id at time at.
func (s *RevokedSet) setLocked(id string, at time.Time) {
	s.ids[id] = at
	heap.Push(&s.byTime, revokedEntry{at: at, id: id})
}

// Contains reports whether id is revoked and not expired.
func (s *RevokedSet) Contains(id string) bool {
	if s.n.Load() == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.ids[id]
	if !ok {
		return false
	}
	if s.now().Sub(at) > s.expires {
		s.purgeLocked(s.now())
		return false
	}
	return true
}

// Entries returns the ids with the time each was added, without expired
// ones.
func (s *RevokedSet) Entries() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purgeLocked(s.now())
	out := make(map[string]time.Time, len(s.ids))
	for id, at := range s.ids {
		out[id] = at
	}
	return out
}

// IDs returns the revoked ids, oldest first.
func (s *RevokedSet) IDs() []string {
	e := s.Entries()
	ids := make([]string, 0, len(e))
	for id := range e {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if e[ids[i]].Equal(e[ids[j]]) {
			return ids[i] < ids[j]
		}
		return e[ids[i]].Before(e[ids[j]])
	})
	return ids
}

// Len returns the number of ids held, expired ones included until the next
// purge.
func (s *RevokedSet) Len() int { return int(s.n.Load()) }

// purgeLocked drops expired ids, then the oldest ones beyond max: each
// removal is a heap pop, so a purge costs O(log n) per id it removes (and
// per stale entry it passes).
func (s *RevokedSet) purgeLocked(now time.Time) {
	for len(s.byTime) > 0 {
		top := s.byTime[0]
		at, live := s.ids[top.id]
		switch {
		case !live || !at.Equal(top.at):
			heap.Pop(&s.byTime) // stale: renewed or already removed
		case now.Sub(top.at) > s.expires || len(s.ids) > s.max:
			heap.Pop(&s.byTime)
			delete(s.ids, top.id)
		default:
			s.compactLocked()
			s.n.Store(int64(len(s.ids)))
			return
		}
	}
	s.n.Store(int64(len(s.ids)))
}

// compactLocked rebuilds the heap from the map when stale entries (ids
// renewed again and again) make up most of it, so that it stays O(n).
func (s *RevokedSet) compactLocked() {
	if len(s.byTime) <= 2*len(s.ids)+64 {
		return
	}
	h := make(revokedHeap, 0, len(s.ids))
	for id, at := range s.ids {
		h = append(h, revokedEntry{at: at, id: id})
	}
	heap.Init(&h)
	s.byTime = h
}

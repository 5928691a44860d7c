package worker

import (
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
// ids make room. It is safe for concurrent use, and Contains is cheap while
// the set is empty.
type RevokedSet struct {
	max     int
	expires time.Duration
	now     func() time.Time

	n  atomic.Int64 // len(ids), for the lock-free empty check
	mu sync.Mutex
	// ids maps an id to the time it was added.
	ids map[string]time.Time
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
		s.ids[id] = now
	}
	s.purgeLocked(now)
}

// AddAt adds id as revoked at the given time (merging another node's set);
// an id already known keeps its later time. Ids older than the expiry are
// ignored.
func (s *RevokedSet) AddAt(id string, at time.Time) {
	now := s.now()
	if now.Sub(at) > s.expires {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.ids[id]; !ok || at.After(old) {
		s.ids[id] = at
	}
	s.purgeLocked(now)
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
		delete(s.ids, id)
		s.n.Store(int64(len(s.ids)))
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

// purgeLocked drops expired ids, then the oldest ones beyond max.
func (s *RevokedSet) purgeLocked(now time.Time) {
	for id, at := range s.ids {
		if now.Sub(at) > s.expires {
			delete(s.ids, id)
		}
	}
	if over := len(s.ids) - s.max; over > 0 {
		type entry struct {
			id string
			at time.Time
		}
		all := make([]entry, 0, len(s.ids))
		for id, at := range s.ids {
			all = append(all, entry{id, at})
		}
		sort.Slice(all, func(i, j int) bool { return all[i].at.Before(all[j].at) })
		for _, e := range all[:over] {
			delete(s.ids, e.id)
		}
	}
	s.n.Store(int64(len(s.ids)))
}

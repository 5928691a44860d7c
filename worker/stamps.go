package worker

import (
	"math"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/gworker/gworker/protocol"
)

// DefaultRevokedStampsMax caps the stamp values a worker keeps revoked by
// revoke_by_stamped_headers, as DefaultRevokedMax caps the revoked ids;
// beyond it the oldest values are forgotten. (Celery's revoked_stamps has
// no cap and no expiry; neither has this set but for the cap.)
const DefaultRevokedStampsMax = 50000

// revokedStamps are the stamp values revoked by revoke_by_stamped_headers,
// by stamp name, as Celery's worker_state.revoked_stamps: a task whose
// stamps hold one of them is not run. Values compare as Python's == does
// for the JSON scalars (1 == 1.0 == True); other values by their repr. At
// most max values are kept, the oldest forgotten first. It is safe for
// concurrent use, and match is cheap while the set is empty.
type revokedStamps struct {
	max int

	n      atomic.Int64 // number of values held, for the lock-free check
	mu     sync.Mutex
	byName map[string]map[string]any // name -> value key -> value
	order  []stampEntry              // additions, oldest first
}

type stampEntry struct{ name, key string }

func newRevokedStamps(max int) *revokedStamps {
	if max <= 0 {
		max = DefaultRevokedStampsMax
	}
	return &revokedStamps{max: max, byName: map[string]map[string]any{}}
}

// add revokes values of the stamp name.
func (s *revokedStamps) add(name string, values []any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range values {
		k := stampKey(v)
		vals := s.byName[name]
		if vals == nil {
			vals = map[string]any{}
			s.byName[name] = vals
		}
		if _, ok := vals[k]; ok {
			continue
		}
		vals[k] = v
		s.order = append(s.order, stampEntry{name, k})
	}
	for len(s.order) > s.max {
		e := s.order[0]
		s.order = s.order[1:]
		delete(s.byName[e.name], e.key)
		if len(s.byName[e.name]) == 0 {
			delete(s.byName, e.name)
		}
	}
	if cap(s.order) > 2*s.max+64 {
		s.order = append([]stampEntry(nil), s.order...)
	}
	s.n.Store(int64(len(s.order)))
}

// snapshot returns the revoked values by name.
func (s *revokedStamps) snapshot() map[string][]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]any, len(s.byName))
	for _, e := range s.order {
		out[e.name] = append(out[e.name], s.byName[e.name][e.key])
	}
	return out
}

// match tells whether msg carries a revoked stamp, and which: the first
// name in its stamped_headers with a revoked value, and that value (one
// element of a list-valued stamp). Celery's Request.revoked looks only at
// the first stamped header that has revoked values at all, whatever the
// order its producer listed them in (a Python set's); this looks at all of
// them, so a task Celery would revoke is always revoked here.
func (s *revokedStamps) match(msg *protocol.Message) (name string, value any, ok bool) {
	if s == nil || s.n.Load() == 0 {
		return "", nil, false
	}
	stamps := msg.Stamps()
	if len(stamps) == 0 {
		return "", nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range msg.StampedHeaders() {
		vals := s.byName[n]
		if len(vals) == 0 {
			continue
		}
		for _, v := range stampValues(stamps[n]) {
			if _, hit := vals[stampKey(v)]; hit {
				return n, v, true
			}
		}
	}
	return "", nil, false
}

// stampValues is Celery's maybe_list for a stamp's value: a list's
// elements, or the value alone.
func stampValues(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	return []any{v}
}

// matchStamps returns, for every name of want that msg is stamped with,
// the values of that stamp that want lists (Celery's intersection of the
// request's and the revoked values).
func matchStamps(msg *protocol.Message, want map[string][]any) map[string][]any {
	stamps := msg.Stamps()
	if len(stamps) == 0 {
		return nil
	}
	var out map[string][]any
	for name, revoked := range want {
		have, ok := stamps[name]
		if !ok {
			continue
		}
		keys := make(map[string]bool, len(revoked))
		for _, v := range revoked {
			keys[stampKey(v)] = true
		}
		for _, v := range stampValues(have) {
			if keys[stampKey(v)] {
				if out == nil {
					out = map[string][]any{}
				}
				out[name] = append(out[name], v)
			}
		}
	}
	return out
}

// stampKey is the identity of a stamp value under Python's ==: numbers
// and booleans by their numeric value, text as text, anything else by its
// repr.
func stampKey(v any) string {
	switch x := v.(type) {
	case nil:
		return "z"
	case string:
		return "s" + x
	case []byte:
		return "s" + string(x)
	case bool:
		if x {
			return "n1"
		}
		return "n0"
	case int64:
		return "n" + strconv.FormatInt(x, 10)
	case int:
		return "n" + strconv.Itoa(x)
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<63 {
			return "n" + strconv.FormatInt(int64(x), 10)
		}
		return "n" + strconv.FormatFloat(x, 'g', -1, 64)
	}
	return "r" + protocol.PyRepr(v)
}

// StampRevocation is what RevokeByStamps did: the stamp values it revoked
// by name, and, with terminate, the running tasks it terminated with the
// matching values of each stamp (Celery's reply lists these).
type StampRevocation struct {
	// Terminated is the ids of the running tasks terminated.
	Terminated []string
	// Matched holds, by stamp name, the values that terminated a task,
	// each once, in the order met.
	Matched map[string][]any
}

// revokeStamps records headers (stamp name -> values) as revoked. Tasks
// waiting in the worker with one of these stamps (held for their ETA or
// their rate limit) are released at once, to be discarded as REVOKED; any
// received later is discarded on arrival; with terminate, running ones are
// terminated.
func (r *revocation) revokeStamps(headers map[string][]any, terminate bool, signal string) StampRevocation {
	names := make([]string, 0, len(headers))
	for n := range headers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		r.stamps.add(n, headers[n])
	}
	waiting := map[string]bool{}
	for _, jobs := range [][]*job{r.hold.scheduled(), r.hold.throttled()} {
		for _, j := range jobs {
			if len(matchStamps(j.msg, headers)) > 0 {
				waiting[j.msg.ID] = true
			}
		}
	}
	if len(waiting) > 0 {
		r.hold.expedite(waiting)
	}
	var out StampRevocation
	if !terminate {
		return out
	}
	running := map[string]bool{}
	seen := map[string]map[string]bool{}
	for _, j := range r.active.running() {
		m := matchStamps(j.msg, headers)
		if len(m) == 0 {
			continue
		}
		running[j.msg.ID] = true
		for _, n := range names {
			for _, v := range m[n] {
				k := stampKey(v)
				if seen[n] == nil {
					seen[n] = map[string]bool{}
				}
				if !seen[n][k] {
					seen[n][k] = true
					if out.Matched == nil {
						out.Matched = map[string][]any{}
					}
					out.Matched[n] = append(out.Matched[n], v)
				}
			}
		}
	}
	if len(running) > 0 {
		out.Terminated = r.active.terminate(running, signal)
	}
	return out
}

// RevokeByStamps is Celery's revoke_by_stamped_headers: it revokes the
// given values of each stamp (headers maps a stamp name to its values). A
// task stamped with one of them is not run when it is received later, and
// one waiting in the worker (held for its ETA or rate limit, or queued) is
// discarded as REVOKED instead of running. With terminate, running tasks
// stamped with one of them are terminated as Revoke terminates them. At
// most DefaultRevokedStampsMax values are kept, the oldest forgotten
// first.
func (w *Worker) RevokeByStamps(headers map[string][]any, terminate bool, signal string) StampRevocation {
	return w.revocation.revokeStamps(headers, terminate, signal)
}

// RevokedStamps returns the stamp values revoked by RevokeByStamps, by
// stamp name, oldest first.
func (w *Worker) RevokedStamps() map[string][]any { return w.revocation.stamps.snapshot() }

// StampedHeaders returns the names of the task's stamps (Celery's
// request.stamped_headers), or nil.
func (r *Request) StampedHeaders() []string { return r.Message.StampedHeaders() }

// Stamps returns the task's stamps by name (Celery's request.stamps), or
// nil.
func (r *Request) Stamps() map[string]any { return r.Message.Stamps() }

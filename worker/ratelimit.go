package worker

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// rateLimits spaces the start of tasks of one name, as Celery's per-task
// token bucket with capacity 1: at most one start per 1/rate interval.
// Waiting tasks hold no pool slot, so other task types are never blocked.
type rateLimits struct {
	n       atomic.Int32 // len(buckets): without limits, reserve takes no lock
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	interval time.Duration
	next     time.Time
}

func newRateLimits() *rateLimits { return &rateLimits{buckets: map[string]*bucket{}} }

// ParseRateLimit reads Celery's rate limit strings: "10/s", "100/m",
// "1000/h", or a bare number of tasks per second. It returns the interval
// between task starts; zero means no limit.
func ParseRateLimit(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	num, unit, _ := strings.Cut(s, "/")
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid rate limit %q", s)
	}
	if n == 0 {
		return 0, nil
	}
	per := time.Second
	switch strings.TrimSpace(unit) {
	case "", "s":
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		return 0, fmt.Errorf("invalid rate limit %q: the unit must be s, m or h", s)
	}
	return time.Duration(float64(per) / n), nil
}

func (r *rateLimits) set(name, limit string) error {
	iv, err := ParseRateLimit(limit)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if iv == 0 {
		delete(r.buckets, name)
	} else {
		r.buckets[name] = &bucket{interval: iv}
	}
	r.n.Store(int32(len(r.buckets)))
	return nil
}

// reserve takes the next start slot of the task and returns how long to
// wait for it.
func (r *rateLimits) reserve(name string) time.Duration {
	if r.n.Load() == 0 {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.buckets[name]
	if b == nil {
		return 0
	}
	now := time.Now()
	at := b.next
	if at.Before(now) {
		at = now
	}
	b.next = at.Add(b.interval)
	return at.Sub(now)
}

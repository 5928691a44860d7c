package worker

import (
	"fmt"
	"testing"
	"time"
)

// fakeClock is a settable clock for a RevokedSet.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newTestRevokedSet(max int, expires time.Duration) (*RevokedSet, *fakeClock) {
	c := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	s := NewRevokedSet(max, expires)
	s.now = c.now
	return s, c
}

// The set keeps at most max ids, dropping the oldest, and drops ids once
// they are older than the expiry; a renewed id counts from its new time.
func TestRevokedSetLimits(t *testing.T) {
	s, c := newTestRevokedSet(3, time.Hour)
	for i := range 5 {
		s.Add(fmt.Sprint("id", i))
		c.t = c.t.Add(time.Minute)
	}
	if got := fmt.Sprint(s.IDs()); got != "[id2 id3 id4]" {
		t.Fatalf("after 5 adds to a set of 3: %s", got)
	}
	s.Add("id2") // renewed: now the newest
	s.Add("id5") // evicts id3, the oldest
	if got := fmt.Sprint(s.IDs()); got != "[id4 id2 id5]" {
		t.Fatalf("after renewing id2 and adding id5: %s", got)
	}
	c.t = c.t.Add(59 * time.Minute)
	if !s.Contains("id4") {
		t.Fatal("id4 expired early")
	}
	c.t = c.t.Add(30 * time.Second) // id4 is past the hour, id2 and id5 are not
	if s.Contains("id4") || !s.Contains("id5") || s.Len() != 2 {
		t.Fatalf("after an hour: %v (len %d)", s.IDs(), s.Len())
	}
	// A merge keeps the later time and ignores what has expired.
	s.AddAll(map[string]time.Time{"id5": c.t.Add(-3 * time.Hour), "old": c.t.Add(-2 * time.Hour), "new": c.t})
	if got := fmt.Sprint(s.IDs()); got != "[id2 id5 new]" {
		t.Fatalf("after a merge: %s", got)
	}
}

// Renewing the same id over and over does not grow the heap without
// bound.
func TestRevokedSetRenewalsStayBounded(t *testing.T) {
	s, c := newTestRevokedSet(10, time.Hour)
	for range 100000 {
		c.t = c.t.Add(time.Millisecond)
		s.Add("same")
	}
	if n := len(s.byTime); n > 2*len(s.ids)+65 {
		t.Fatalf("heap of %d entries for %d ids", n, len(s.ids))
	}
}

// BenchmarkRevokedSetFill fills a set to Celery's 50,000 ids and then
// merges 20,000 more, as a full --statedb load and a mingle hello do;
// before the heap each id cost a pass over the whole set (35.5 s for the
// load on the test machine).
func BenchmarkRevokedSetFill(b *testing.B) {
	ids := make([]string, 70000)
	for i := range ids {
		ids[i] = fmt.Sprintf("%08d-0000-4000-8000-000000000000", i)
	}
	for range b.N {
		s := NewRevokedSet(0, 0)
		now := time.Now()
		for i, id := range ids[:50000] {
			s.AddAt(id, now.Add(time.Duration(i-50000)*time.Millisecond))
		}
		merge := make(map[string]time.Time, 20000)
		for _, id := range ids[50000:] {
			merge[id] = now
		}
		s.AddAll(merge)
		if s.Len() != DefaultRevokedMax {
			b.Fatalf("len %d", s.Len())
		}
	}
}

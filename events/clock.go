package events

import (
	"math"
	"sync/atomic"
)

// Clock is a Lamport clock, as Celery's app.clock: every event and control
// reply a node sends carries the next value, and a node that receives a
// clock value from a peer moves past it. The zero value is ready to use and
// a Clock is safe for concurrent use.
//
// Python's integers have no limit and Go's do: the clock stops at
// math.MaxInt64 rather than wrapping to a negative value, so a peer (or
// anyone on the broker) that sends a clock near the limit cannot make the
// node's clock go backwards.
type Clock struct{ v atomic.Int64 }

// Forward advances the clock and returns the new value.
func (c *Clock) Forward() int64 {
	for {
		cur := c.v.Load()
		if cur == math.MaxInt64 {
			return cur
		}
		if c.v.CompareAndSwap(cur, cur+1) {
			return cur + 1
		}
	}
}

// Adjust moves the clock past a value received from another node and
// returns the new value: max(local, other) + 1, at most math.MaxInt64.
func (c *Clock) Adjust(other int64) int64 {
	for {
		cur := c.v.Load()
		next := max(cur, other)
		if next < math.MaxInt64 {
			next++
		}
		if c.v.CompareAndSwap(cur, next) {
			return next
		}
	}
}

// Value returns the current value.
func (c *Clock) Value() int64 { return c.v.Load() }

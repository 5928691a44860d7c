package events

import "sync/atomic"

// Clock is a Lamport clock, as Celery's app.clock: every event and control
// reply a node sends carries the next value, and a node that receives a
// clock value from a peer moves past it. The zero value is ready to use and
// a Clock is safe for concurrent use.
type Clock struct{ v atomic.Int64 }

// Forward advances the clock and returns the new value.
func (c *Clock) Forward() int64 { return c.v.Add(1) }

// Adjust moves the clock past a value received from another node and
// returns the new value: max(local, other) + 1.
func (c *Clock) Adjust(other int64) int64 {
	for {
		cur := c.v.Load()
		next := max(cur, other) + 1
		if c.v.CompareAndSwap(cur, next) {
			return next
		}
	}
}

// Value returns the current value.
func (c *Clock) Value() int64 { return c.v.Load() }

package events_test

import (
	"math"
	"testing"

	"github.com/gworker/gworker/events"
)

// A clock value near the limit from a peer makes the clock stop at
// math.MaxInt64, never wrap to a negative value.
func TestClockSaturates(t *testing.T) {
	var c events.Clock
	if v := c.Adjust(math.MaxInt64 - 1); v != math.MaxInt64 {
		t.Fatalf("Adjust(MaxInt64-1) = %d", v)
	}
	if v := c.Forward(); v != math.MaxInt64 {
		t.Errorf("Forward at the limit = %d", v)
	}
	if v := c.Adjust(math.MaxInt64); v != math.MaxInt64 {
		t.Errorf("Adjust(MaxInt64) = %d", v)
	}
	if v := c.Adjust(-5); v != math.MaxInt64 {
		t.Errorf("Adjust(-5) at the limit = %d", v)
	}
}

func TestClockMovesPastPeers(t *testing.T) {
	var c events.Clock
	if c.Forward() != 1 || c.Adjust(10) != 11 || c.Adjust(3) != 12 || c.Value() != 12 {
		t.Errorf("clock at %d", c.Value())
	}
}

package worker

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/config"
	"github.com/gworker/gworker/protocol"
)

// testControls are Controls over parts of their own, with a running
// consumer.
func testControls(t *testing.T) (*Controls, *testConsumer, *testBroker) {
	t.Helper()
	reg := NewRegistry()
	reg.MustRegister("t.known", func() {})
	log := zap.NewNop()
	limits := newRateLimits()
	b := newTestBroker()
	c := &Controls{
		registry: reg, log: log, prefetchMultiplier: 4,
		limits:     limits,
		timeLimits: newTimeLimits(0, 0),
		pool:       newPool(2, func(*job) {}, func(*job) {}),
		hold:       newHold(log, 8, 10, -1, 0, false, limits, protocol.DecodeOptions{}, newHoldProbe().hooks()),
		consumers:  newConsumers(b, log, []string{"startup"}, func(ds <-chan Delivery) {}),
	}
	main := newTestConsumer()
	c.hold.start(main)
	c.consumers.start(main)
	return c, main, b
}

func TestControlsLimits(t *testing.T) {
	c, _, _ := testControls(t)
	if err := c.SetRateLimit("t.unknown", "1/s"); !errors.Is(err, ErrUnknownTask) {
		t.Errorf("rate limit of an unknown task: %v", err)
	}
	if err := c.SetTimeLimit("t.unknown", time.Second, 0); !errors.Is(err, ErrUnknownTask) {
		t.Errorf("time limit of an unknown task: %v", err)
	}
	if err := c.SetRateLimit("t.known", "x/s"); err == nil {
		t.Error("an invalid rate limit accepted")
	}
	if err := c.SetRateLimit("t.known", "1/h"); err != nil {
		t.Fatal(err)
	}
	c.limits.reserve("t.known")
	if d := c.limits.reserve("t.known"); d <= 0 {
		t.Error("the rate limit set does not apply")
	}
	if err := c.SetTimeLimit("t.known", time.Second, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if hard, soft := c.timeLimits.of(&protocol.Message{}, &Task{Name: "t.known"}); hard != 2*time.Second || soft != time.Second {
		t.Errorf("limits %v %v", hard, soft)
	}
}

func TestControlsResizePoolMovesTheWindow(t *testing.T) {
	c, main, _ := testControls(t)
	if err := c.ResizePool(1); err != nil {
		t.Fatal(err)
	}
	if err := c.ResizePool(-3); !errors.Is(err, ErrPoolSize) {
		t.Errorf("shrinking to zero: %v", err)
	}
	if c.pool.concurrency() != 3 || c.hold.prefetchCount() != 12 {
		t.Errorf("concurrency %d, prefetch %d", c.pool.concurrency(), c.hold.prefetchCount())
	}
	if got := main.windows(); !reflect.DeepEqual(got, []int{12}) {
		t.Errorf("windows %v", got)
	}
}

func TestControlsQueues(t *testing.T) {
	c, _, b := testControls(t)
	ctx := context.Background()
	if err := c.AddQueue(ctx, "extra"); err != nil {
		t.Fatal(err)
	}
	if b.prefetch["extra"] != 8 {
		t.Errorf("added with prefetch %d, want the worker's 8", b.prefetch["extra"])
	}
	if err := c.CancelQueue(ctx, "extra"); err != nil {
		t.Fatal(err)
	}
	c.consumers.cancelAdded(ctx)
	c.consumers.closeAdded()
}

func TestControlsResizePoolIsBounded(t *testing.T) {
	c, main, _ := testControls(t)
	c.pool.max = 10
	for range 8 {
		if err := c.ResizePool(1); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.ResizePool(1); !errors.Is(err, ErrPoolLimit) {
		t.Errorf("growing past the maximum: %v", err)
	}
	if err := c.ResizePool(-10); !errors.Is(err, ErrPoolSize) {
		t.Errorf("shrinking to zero: %v", err)
	}
	if c.pool.concurrency() != 10 || c.hold.prefetchCount() != 40 {
		t.Errorf("concurrency %d, prefetch %d", c.pool.concurrency(), c.hold.prefetchCount())
	}
	if w := main.windows(); w[len(w)-1] != 40 {
		t.Errorf("windows %v", w)
	}
}

func TestPoolDefaultMaximum(t *testing.T) {
	p := newPool(1, func(*job) {}, func(*job) {})
	if _, err := p.resize(config.DefaultMaxConcurrency); !errors.Is(err, ErrPoolLimit) {
		t.Errorf("growing past config.DefaultMaxConcurrency: %v", err)
	}
	if _, err := p.resize(config.DefaultMaxConcurrency - 1); err != nil {
		t.Errorf("growing to config.DefaultMaxConcurrency: %v", err)
	}
}

package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Errors of the operations API.
var (
	// ErrUnknownTask: a runtime change names a task that is not registered.
	ErrUnknownTask = errors.New("worker: unknown task")
	// ErrNotRunning: the change needs a running worker.
	ErrNotRunning = errors.New("worker: not running")
	// ErrStartupQueue: a queue given at start-up cannot be cancelled while
	// the worker runs (only queues added with AddQueue can).
	ErrStartupQueue = errors.New("worker: queue given at start-up cannot be cancelled")
	// ErrNotConsuming: the queue is not consumed.
	ErrNotConsuming = errors.New("worker: not consuming from that queue")
	// ErrPoolSize: a pool change would leave no slot.
	ErrPoolSize = errors.New("worker: the pool cannot shrink below one slot")
	// ErrPoolLimit: a pool change would pass Config.MaxConcurrency.
	ErrPoolLimit = errors.New("worker: the pool cannot grow past its maximum concurrency")
)

// Controls change a running worker as Celery's remote control commands
// do: rate and time limits, the pool size and the consumed queues. Get
// them with Worker.Controls. Their methods are safe for concurrent use.
type Controls struct {
	registry *Registry
	log      *zap.Logger
	// prefetchMultiplier is Config.PrefetchMultiplier: the prefetch
	// window follows the pool size when it is positive.
	prefetchMultiplier int
	limits             *rateLimits
	timeLimits         *timeLimits
	pool               *pool
	hold               *hold
	consumers          *consumers
}

// SetRateLimit changes a task's rate limit at run time ("" removes it).
func (c *Controls) SetRateLimit(task, limit string) error {
	if _, err := c.registry.Lookup(task); err != nil {
		return fmt.Errorf("%w: %q", ErrUnknownTask, task)
	}
	return c.limits.set(task, limit)
}

// SetTimeLimit changes a task's soft and hard time limits at run time
// (zero: none). Limits a message carries still take precedence.
func (c *Controls) SetTimeLimit(task string, soft, hard time.Duration) error {
	if _, err := c.registry.Lookup(task); err != nil {
		return fmt.Errorf("%w: %q", ErrUnknownTask, task)
	}
	c.timeLimits.set(task, soft, hard)
	return nil
}

// ResizePool grows (n > 0) or shrinks (n < 0) the pool by n slots, and the
// prefetch window with it (prefetch multiplier × slots), as Celery's
// pool_grow and pool_shrink. A running task keeps its slot until it ends.
// It refuses, changing nothing, to shrink the pool below one slot
// (ErrPoolSize) or grow it past Config.MaxConcurrency (ErrPoolLimit).
func (c *Controls) ResizePool(n int) error {
	size, err := c.pool.resize(n)
	if err != nil {
		return err
	}
	if c.prefetchMultiplier > 0 {
		if window, cons := c.hold.setPrefetch(size * c.prefetchMultiplier); cons != nil {
			if err := cons.SetPrefetch(window); err != nil {
				c.log.Warn("change prefetch", zap.Error(err))
			}
		}
	}
	c.log.Info("pool resized", zap.Int("concurrency", c.pool.concurrency()))
	return nil
}

// AddQueue starts consuming a queue while the worker runs (Celery's
// add_consumer). Consuming a queue already consumed is not an error.
func (c *Controls) AddQueue(ctx context.Context, name string) error {
	return c.consumers.add(ctx, name, c.hold.prefetchCount())
}

// CancelQueue stops consuming a queue added with AddQueue (Celery's
// cancel_consumer). Messages already received still run.
func (c *Controls) CancelQueue(ctx context.Context, name string) error {
	return c.consumers.cancel(ctx, name)
}

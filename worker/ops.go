package worker

import (
	"context"
	"errors"
	"fmt"
	"sort"
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
)

// ScheduledPriority is the priority Celery's timer gives held ETA tasks, as
// `inspect scheduled` reports it.
const ScheduledPriority = 6

// TaskInfo describes a task the worker holds, as Celery's Request.info():
// what `inspect active`, `reserved` and `scheduled` report.
type TaskInfo struct {
	ID     string
	Name   string
	Args   []any
	Kwargs map[string]any
	// Hostname is the worker's node name.
	Hostname string
	// TimeStart is when the task started; zero when it has not.
	TimeStart    time.Time
	Acknowledged bool
	DeliveryInfo DeliveryInfo
	// HasPriority is false when the message had no priority property.
	HasPriority bool
	// WorkerPID is the process id once the task runs, 0 before.
	WorkerPID int
}

// ScheduledTask is a task held until its ETA.
type ScheduledTask struct {
	ETA      time.Time
	Priority int
	Request  TaskInfo
}

// TaskState is where a task is: "active", "reserved" (waiting for a slot
// or its rate limit) or "scheduled" (held for its ETA).
type TaskState struct {
	State string
	Info  TaskInfo
}

// Ready is closed once Run consumes and the pool runs.
func (w *Worker) Ready() <-chan struct{} { return w.ready }

// Registry returns the worker's task registry.
func (w *Worker) Registry() *Registry { return w.cfg.Registry }

// PID returns the process id the worker reports.
func (w *Worker) PID() int { return w.pid }

// RevokedSet returns the set of revoked task ids.
func (w *Worker) RevokedSet() *RevokedSet { return w.revocation.set }

// Active lists the running tasks.
func (w *Worker) Active() []TaskInfo { return w.active.list() }

// ActiveCount returns the number of running tasks.
func (w *Worker) ActiveCount() int { return w.active.count() }

// Reserved lists the tasks received and waiting for a pool slot or for
// their rate limit (not those held for an ETA).
func (w *Worker) Reserved() []TaskInfo {
	return w.active.describe(append(w.pool.queued(), w.hold.throttled()...))
}

// Scheduled lists the tasks held until their ETA, soonest first.
func (w *Worker) Scheduled() []ScheduledTask {
	held := w.hold.scheduled()
	infos := w.active.describe(held)
	out := make([]ScheduledTask, 0, len(held))
	for i, j := range held {
		st := ScheduledTask{Priority: ScheduledPriority, Request: infos[i]}
		if j.msg.ETA != nil {
			st.ETA = *j.msg.ETA
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, k int) bool { return out[i].ETA.Before(out[k].ETA) })
	return out
}

// QueryTasks tells where each known id is; unknown ids are left out.
func (w *Worker) QueryTasks(ids ...string) map[string]TaskState {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	out := map[string]TaskState{}
	for _, ti := range w.Reserved() {
		if want[ti.ID] {
			out[ti.ID] = TaskState{State: "reserved", Info: ti}
		}
	}
	for _, st := range w.Scheduled() {
		if want[st.Request.ID] {
			out[st.Request.ID] = TaskState{State: "scheduled", Info: st.Request}
		}
	}
	for _, ti := range w.Active() {
		if want[ti.ID] {
			out[ti.ID] = TaskState{State: "active", Info: ti}
		}
	}
	return out
}

// Totals returns how many tasks of each name started, as Celery's
// `inspect stats` total.
func (w *Worker) Totals() map[string]int64 { return w.active.totalsByName() }

// Processed returns how many tasks started in all.
func (w *Worker) Processed() int64 { return w.active.processed() }

// Revoke adds ids to the revoked set: a task with one of these ids is not
// run when it is received later, and one waiting in the worker (held for
// its ETA, waiting for its rate limit, or queued) is discarded as REVOKED
// instead of running. With terminate, the contexts of running tasks with
// these ids are cancelled (cause ErrTerminated); Go cannot stop a goroutine,
// so a task that ignores its context runs on, but whatever it returns is
// dropped and REVOKED is stored when it ends. Revoke returns the ids of
// the running tasks it terminated.
func (w *Worker) Revoke(ids []string, terminate bool, signal string) []string {
	return w.revocation.revoke(ids, terminate, signal)
}

// SetRateLimit changes a task's rate limit at run time ("" removes it).
func (w *Worker) SetRateLimit(task, limit string) error {
	if _, err := w.cfg.Registry.Lookup(task); err != nil {
		return fmt.Errorf("%w: %q", ErrUnknownTask, task)
	}
	return w.limits.set(task, limit)
}

// SetTimeLimit changes a task's soft and hard time limits at run time
// (zero: none). Limits a message carries still take precedence.
func (w *Worker) SetTimeLimit(task string, soft, hard time.Duration) error {
	if _, err := w.cfg.Registry.Lookup(task); err != nil {
		return fmt.Errorf("%w: %q", ErrUnknownTask, task)
	}
	w.timeLimits.set(task, soft, hard)
	return nil
}

// Concurrency returns the current pool size.
func (w *Worker) Concurrency() int { return w.pool.concurrency() }

// Prefetch returns the prefetch count asked of the broker (0: no limit).
func (w *Worker) Prefetch() int { return w.hold.prefetchCount() }

// ResizePool grows (n > 0) or shrinks (n < 0) the pool by n slots, and the
// prefetch window with it (prefetch multiplier × slots), as Celery's
// pool_grow and pool_shrink. A running task keeps its slot until it ends.
func (w *Worker) ResizePool(n int) error {
	size, err := w.pool.resize(n)
	if err != nil {
		return err
	}
	if w.cfg.PrefetchMultiplier > 0 {
		if window, cons := w.hold.setPrefetch(size * w.cfg.PrefetchMultiplier); cons != nil {
			if err := cons.SetPrefetch(window); err != nil {
				w.log.Warn("change prefetch", zap.Error(err))
			}
		}
	}
	w.log.Info("pool resized", zap.Int("concurrency", w.Concurrency()))
	return nil
}

// Queues returns the consumed queues.
func (w *Worker) Queues() []string { return w.consumers.list() }

// AddQueue starts consuming a queue while the worker runs (Celery's
// add_consumer). Consuming a queue already consumed is not an error.
func (w *Worker) AddQueue(ctx context.Context, name string) error {
	return w.consumers.add(ctx, name, w.hold.prefetchCount())
}

// CancelQueue stops consuming a queue added with AddQueue (Celery's
// cancel_consumer). Messages already received still run.
func (w *Worker) CancelQueue(ctx context.Context, name string) error {
	return w.consumers.cancel(ctx, name)
}

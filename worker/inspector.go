package worker

import (
	"sort"
	"time"
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

// Inspector reads what a worker holds and did, for remote control
// (`celery inspect`), metrics and events; it changes nothing. Get it with
// Worker.Inspector. Its methods are safe for concurrent use.
type Inspector struct {
	pid       int
	active    *activeTasks
	pool      *pool
	hold      *hold
	consumers *consumers
	counts    *counters
	results   *resultWriter
	pending   *pendingResults
}

// Stats returns the worker's counters.
func (in *Inspector) Stats() Stats {
	return in.counts.stats(in.pending.len(), in.results.retries.Load())
}

// PID returns the process id the worker reports.
func (in *Inspector) PID() int { return in.pid }

// Active lists the running tasks.
func (in *Inspector) Active() []TaskInfo { return in.active.list() }

// ActiveCount returns the number of running tasks.
func (in *Inspector) ActiveCount() int { return in.active.count() }

// Reserved lists the tasks received and waiting for a pool slot or for
// their rate limit (not those held for an ETA).
func (in *Inspector) Reserved() []TaskInfo {
	return in.active.describe(append(in.pool.queued(), in.hold.throttled()...))
}

// Scheduled lists the tasks held until their ETA, soonest first.
func (in *Inspector) Scheduled() []ScheduledTask {
	held := in.hold.scheduled()
	infos := in.active.describe(held)
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

// ScheduledCount returns how many tasks are held until their ETA, without
// listing them.
func (in *Inspector) ScheduledCount() int { return in.hold.scheduledCount() }

// QueryTasks tells where each known id is; unknown ids are left out.
func (in *Inspector) QueryTasks(ids ...string) map[string]TaskState {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	out := map[string]TaskState{}
	for _, ti := range in.Reserved() {
		if want[ti.ID] {
			out[ti.ID] = TaskState{State: "reserved", Info: ti}
		}
	}
	for _, st := range in.Scheduled() {
		if want[st.Request.ID] {
			out[st.Request.ID] = TaskState{State: "scheduled", Info: st.Request}
		}
	}
	for _, ti := range in.Active() {
		if want[ti.ID] {
			out[ti.ID] = TaskState{State: "active", Info: ti}
		}
	}
	return out
}

// Totals returns how many tasks of each name started, as Celery's
// `inspect stats` total.
func (in *Inspector) Totals() map[string]int64 { return in.active.totalsByName() }

// Processed returns how many tasks started in all.
func (in *Inspector) Processed() int64 { return in.active.processed() }

// Concurrency returns the current pool size.
func (in *Inspector) Concurrency() int { return in.pool.concurrency() }

// Prefetch returns the prefetch count asked of the broker (0: no limit).
func (in *Inspector) Prefetch() int { return in.hold.prefetchCount() }

// Queues returns the consumed queues.
func (in *Inspector) Queues() []string { return in.consumers.list() }

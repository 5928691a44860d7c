package worker

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/gworker/gworker/protocol"
)

// ErrTerminated is the cause of the context of a task terminated by
// Revoke(..., terminate=true).
var ErrTerminated = &protocol.Exception{Type: "Terminated", Module: "billiard.exceptions", Args: []any{"SIGTERM"}}

// activeTasks are the tasks running now, with how to terminate them, and
// how many tasks of each name started. It also guards the run fields of
// every job (started, ackedAtStart, cancel, terminated, signal), so it
// describes any job the worker holds.
type activeTasks struct {
	hostname string // reported in TaskInfo
	pid      int

	mu     sync.Mutex
	jobs   map[*job]struct{}
	totals map[string]int64
}

func newActiveTasks(hostname string, pid int) *activeTasks {
	return &activeTasks{hostname: hostname, pid: pid, jobs: map[*job]struct{}{}, totals: map[string]int64{}}
}

// start records j as running.
func (a *activeTasks) start(j *job) {
	a.mu.Lock()
	j.started = time.Now()
	j.ackedAtStart = j.acked
	a.jobs[j] = struct{}{}
	a.totals[j.task.Name]++
	a.mu.Unlock()
}

// setCancel records how to terminate j; it cancels at once when j was
// terminated before it could.
func (a *activeTasks) setCancel(j *job, cancel context.CancelCauseFunc) {
	a.mu.Lock()
	j.cancel = cancel
	term := j.terminated
	a.mu.Unlock()
	if term {
		cancel(ErrTerminated)
	}
}

// end removes j from the running tasks and reports whether it was
// terminated.
func (a *activeTasks) end(j *job) bool {
	a.mu.Lock()
	delete(a.jobs, j)
	j.cancel = nil
	term := j.terminated
	a.mu.Unlock()
	return term
}

// terminate cancels the contexts of the running tasks whose id is in ids,
// with cause ErrTerminated, and returns their ids. A task terminated once
// is not again.
func (a *activeTasks) terminate(ids map[string]bool, signal string) []string {
	var terminated []string
	var cancels []context.CancelCauseFunc
	a.mu.Lock()
	for j := range a.jobs {
		if ids[j.msg.ID] && !j.terminated {
			j.terminated = true
			j.signal = signal
			terminated = append(terminated, j.msg.ID)
			if j.cancel != nil {
				cancels = append(cancels, j.cancel)
			}
		}
	}
	a.mu.Unlock()
	for _, c := range cancels {
		c(ErrTerminated)
	}
	return terminated
}

// count returns the number of running tasks.
func (a *activeTasks) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.jobs)
}

// totalsByName returns how many tasks of each name started.
func (a *activeTasks) totalsByName() map[string]int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int64, len(a.totals))
	for k, v := range a.totals {
		out[k] = v
	}
	return out
}

// processed returns how many tasks started in all.
func (a *activeTasks) processed() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	var n int64
	for _, v := range a.totals {
		n += v
	}
	return n
}

// list describes the running tasks, the longest running first.
func (a *activeTasks) list() []TaskInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]TaskInfo, 0, len(a.jobs))
	for j := range a.jobs {
		out = append(out, a.info(j))
	}
	sort.Slice(out, func(i, k int) bool { return out[i].TimeStart.Before(out[k].TimeStart) })
	return out
}

// describe describes jobs, running or not.
func (a *activeTasks) describe(jobs []*job) []TaskInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]TaskInfo, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, a.info(j))
	}
	return out
}

// info describes j as Celery's Request.info(); a.mu is held.
func (a *activeTasks) info(j *job) TaskInfo {
	m := j.msg
	ti := TaskInfo{
		ID: m.ID, Name: m.Task, Args: m.Args, Kwargs: m.Kwargs, Hostname: a.hostname,
		DeliveryInfo: DeliveryInfo{Exchange: m.Exchange, RoutingKey: m.RoutingKey, Priority: m.Priority, Redelivered: m.Redelivered},
		HasPriority:  j.d.Raw().HasPriority,
	}
	if !j.started.IsZero() {
		ti.TimeStart = j.started
		ti.Acknowledged = j.ackedAtStart
		ti.WorkerPID = a.pid
	}
	return ti
}

// running returns the running jobs.
func (a *activeTasks) running() []*job {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*job, 0, len(a.jobs))
	for j := range a.jobs {
		out = append(out, j)
	}
	return out
}

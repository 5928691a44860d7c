package worker

import (
	"context"
	"reflect"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// testExecutor is an executor over in-memory parts.
type testExecutor struct {
	*executor
	backend   *memBackend
	events    *eventList
	followups *countingFollowups
	logs      *observer.ObservedLogs
	cancel    context.CancelFunc // a cold shutdown
}

func newTestExecutor(t *testing.T, tweak func(*executor)) *testExecutor {
	t.Helper()
	b, ev, f := &memBackend{}, &eventList{}, &countingFollowups{}
	log, logs := observed()
	base, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	results := &resultWriter{backend: b, hostname: "celery@h", pid: 1, log: log, stop: base.Done()}
	followups := &followupSender{f: f, log: log}
	events := newTaskEvents(ev)
	counts := &counters{}
	active := newActiveTasks("celery@h", 1)
	hold := newHold(zap.NewNop(), 4, 10, -1, 0, false, newRateLimits(), protocol.DecodeOptions{}, newHoldProbe().hooks())
	e := &executor{
		log: log, base: base, maxRedeliveries: DefaultMaxRedeliveries,
		revocation: &revocation{set: NewRevokedSet(0, 0), hold: hold, active: active, results: results,
			followups: followups, events: events, counts: counts, log: log},
		active:    active,
		runner:    &runner{hostname: "celery@h", log: log, base: base, limits: newTimeLimits(0, 0), active: active},
		results:   results,
		pending:   newPendingResults(b, 10, log),
		followups: followups,
		events:    events,
		counts:    counts,
	}
	if tweak != nil {
		tweak(e)
	}
	return &testExecutor{executor: e, backend: b, events: ev, followups: f, logs: logs, cancel: cancel}
}

// eventTypes returns the types of the events sent, in order.
func (te *testExecutor) eventTypes() []string {
	var out []string
	for _, ev := range te.events.got {
		out = append(out, ev.Type)
	}
	return out
}

func TestExecuteRunsATaskThroughItsStages(t *testing.T) {
	for _, late := range []bool{false, true} {
		te := newTestExecutor(t, func(e *executor) { e.acksLate = late })
		ran := false
		j := testJob(t, "tasks.ok", "ok", func(context.Context, []any, map[string]any) (any, error) {
			ran = true
			return int64(1), nil
		}, TaskOptions{})
		te.execute(j)
		if !ran {
			t.Fatalf("late %v: the task did not run", late)
		}
		if got := j.delivery().outcome(); !reflect.DeepEqual(got, []string{"ack"}) {
			t.Errorf("late %v: settled %v", late, got)
		}
		if got := te.backend.states("ok"); !reflect.DeepEqual(got, []result.State{result.Success}) {
			t.Errorf("late %v: stored %v", late, got)
		}
		if got := te.eventTypes(); !reflect.DeepEqual(got, []string{EventTaskStarted, EventTaskSucceeded}) {
			t.Errorf("late %v: events %v", late, got)
		}
		if te.active.count() != 0 || te.active.processed() != 1 || te.counts.succeeded.Load() != 1 {
			t.Errorf("late %v: active %d, processed %d, succeeded %d", late, te.active.count(), te.active.processed(), te.counts.succeeded.Load())
		}
	}
}

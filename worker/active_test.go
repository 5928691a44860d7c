package worker

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

func TestActiveTasksTrackRunningTasks(t *testing.T) {
	a := newActiveTasks("celery@h", 7)
	first := testJob(t, "tasks.a", "1", nil, TaskOptions{})
	second := testJob(t, "tasks.b", "2", nil, TaskOptions{})
	waiting := testJob(t, "tasks.a", "3", nil, TaskOptions{})
	first.acked = true
	a.start(first)
	a.start(second)
	if a.count() != 2 || a.processed() != 2 {
		t.Fatalf("count %d, processed %d", a.count(), a.processed())
	}
	list := a.list()
	if len(list) != 2 || list[0].ID != "1" || list[1].ID != "2" {
		t.Fatalf("list %+v, want the longest running first", list)
	}
	if ti := list[0]; ti.Hostname != "celery@h" || ti.WorkerPID != 7 || !ti.Acknowledged || ti.TimeStart.IsZero() || ti.Name != "tasks.a" {
		t.Errorf("running info %+v", ti)
	}
	if ti := a.describe([]*job{waiting})[0]; ti.WorkerPID != 0 || !ti.TimeStart.IsZero() || ti.Acknowledged || ti.ID != "3" {
		t.Errorf("waiting info %+v", ti)
	}

	if a.end(first) {
		t.Error("a task that was not terminated ends as terminated")
	}
	a.start(waiting)
	a.end(waiting)
	a.end(second)
	if a.count() != 0 || a.processed() != 3 {
		t.Fatalf("count %d, processed %d after the ends", a.count(), a.processed())
	}
	if got := a.totalsByName(); !reflect.DeepEqual(got, map[string]int64{"tasks.a": 2, "tasks.b": 1}) {
		t.Errorf("totals %v", got)
	}
}

func TestActiveTasksTerminate(t *testing.T) {
	a := newActiveTasks("celery@h", 7)
	target := testJob(t, "t", "target", nil, TaskOptions{})
	other := testJob(t, "t", "other", nil, TaskOptions{})
	a.start(target)
	a.start(other)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	a.setCancel(target, cancel)
	otherCtx, otherCancel := context.WithCancelCause(context.Background())
	defer otherCancel(nil)
	a.setCancel(other, otherCancel)

	if got := a.terminate(map[string]bool{"target": true, "unknown": true}, "SIGKILL"); !reflect.DeepEqual(got, []string{"target"}) {
		t.Fatalf("terminated %v", got)
	}
	if !errors.Is(context.Cause(ctx), ErrTerminated) {
		t.Errorf("cause %v", context.Cause(ctx))
	}
	if otherCtx.Err() != nil {
		t.Error("another task was cancelled")
	}
	if got := a.terminate(map[string]bool{"target": true}, "SIGTERM"); len(got) != 0 {
		t.Errorf("terminated twice: %v", got)
	}
	if !a.end(target) || target.signal != "SIGKILL" {
		t.Errorf("end: terminated %v, signal %q", target.terminated, target.signal)
	}
	a.end(other)
}

func TestActiveTasksTerminateBeforeTheContextExists(t *testing.T) {
	a := newActiveTasks("celery@h", 7)
	j := testJob(t, "t", "early", nil, TaskOptions{})
	a.start(j)
	if got := a.terminate(map[string]bool{"early": true}, "SIGTERM"); len(got) != 1 {
		t.Fatalf("terminated %v", got)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	a.setCancel(j, cancel)
	if !errors.Is(context.Cause(ctx), ErrTerminated) {
		t.Errorf("a task terminated before it had a context runs: cause %v", context.Cause(ctx))
	}
}

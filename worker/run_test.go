package worker

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/gworker/gworker/result"
)

func TestRunnerRunsTheHandlerWithItsRequest(t *testing.T) {
	te := newTestExecutor(t, nil)
	j := testJob(t, "tasks.req", "req-1", func(ctx context.Context, args []any, kwargs map[string]any) (any, error) {
		req, ok := RequestFromContext(ctx)
		if !ok || req.ID != "req-1" || req.Hostname != "celery@h" || req.Task != "tasks.req" {
			return nil, errors.New("bad request")
		}
		LoggerFromContext(ctx).Info("from the task")
		req.AddChild("child")
		return "done", nil
	}, TaskOptions{})
	out := te.runner.run(j)
	if out.exc != nil || out.value != "done" || out.err != nil {
		t.Fatalf("outcome %+v", out)
	}
	if got := out.req.Children(); !reflect.DeepEqual(got, []any{"child"}) {
		t.Errorf("children %v", got)
	}
	lines := te.logs.FilterMessage("from the task").All()
	if len(lines) != 1 {
		t.Fatal("the task's log line is missing")
	}
	if f := lines[0].ContextMap(); f["task"] != "tasks.req" || f["id"] != "req-1" {
		t.Errorf("the task's log line has fields %v, want its task and id", f)
	}
	if LoggerFromContext(context.Background()) == nil {
		t.Error("no logger outside a task")
	}
}

func TestRunnerRecoversPanics(t *testing.T) {
	te := newTestExecutor(t, nil)
	j := testJob(t, "t", "p", func(context.Context, []any, map[string]any) (any, error) { panic("boom") }, TaskOptions{})
	out := te.runner.run(j)
	if out.exc == nil || out.exc.Type != "RuntimeError" || out.traceback == "" {
		t.Fatalf("outcome %+v", out)
	}
}

func waitForContext(ctx context.Context, _ []any, _ map[string]any) (any, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestRunnerAppliesTimeLimits(t *testing.T) {
	te := newTestExecutor(t, nil)
	hard := testJob(t, "t", "hard", waitForContext, TaskOptions{TimeLimit: 10 * time.Millisecond})
	out := te.runner.run(hard)
	if !out.hardLimit || out.exc == nil || out.exc.Type != "TimeLimitExceeded" {
		t.Errorf("hard limit: %+v", out)
	}
	soft := testJob(t, "t", "soft", waitForContext, TaskOptions{SoftTimeLimit: 10 * time.Millisecond})
	out = te.runner.run(soft)
	if out.hardLimit || out.exc == nil || out.exc.Type != "SoftTimeLimitExceeded" {
		t.Errorf("soft limit: %+v", out)
	}
}

func TestRunnerClassifiesRetries(t *testing.T) {
	te := newTestExecutor(t, nil)
	retry := testJob(t, "t", "r", func(context.Context, []any, map[string]any) (any, error) {
		return nil, Retry(errors.New("later"))
	}, TaskOptions{})
	if out := te.runner.run(retry); out.retry == nil || out.exc != nil {
		t.Errorf("explicit retry: %+v", out)
	}
	auto := testJob(t, "t", "a", func(context.Context, []any, map[string]any) (any, error) {
		return nil, errors.New("flaky")
	}, TaskOptions{AutoRetry: &AutoRetryPolicy{Backoff: time.Second}})
	if out := te.runner.run(auto); out.retry == nil || out.retry.Countdown != time.Second {
		t.Errorf("auto retry: %+v", out)
	}
	plain := testJob(t, "t", "f", func(context.Context, []any, map[string]any) (any, error) {
		return nil, PyError("KeyError", "k")
	}, TaskOptions{})
	if out := te.runner.run(plain); out.retry != nil || out.exc == nil || out.exc.Type != "KeyError" || out.traceback == "" {
		t.Errorf("failure: %+v", out)
	}
}

func TestRunStageRecordsTheRun(t *testing.T) {
	te := newTestExecutor(t, func(e *executor) { e.trackStarted = true })
	var activeWhileRunning int
	j := testJob(t, "t", "tracked", func(context.Context, []any, map[string]any) (any, error) {
		activeWhileRunning = te.active.count()
		return nil, nil
	}, TaskOptions{})
	out := te.run(j)
	if activeWhileRunning != 1 || te.active.count() != 0 || out.terminated {
		t.Errorf("active while running %d, after %d, terminated %v", activeWhileRunning, te.active.count(), out.terminated)
	}
	if got := te.backend.states("tracked"); !reflect.DeepEqual(got, []result.State{result.Started}) {
		t.Errorf("stored %v", got)
	}
	if got := te.eventTypes(); !reflect.DeepEqual(got, []string{EventTaskStarted}) {
		t.Errorf("events %v", got)
	}
}

func TestRunStageSeesATermination(t *testing.T) {
	te := newTestExecutor(t, nil)
	j := testJob(t, "t", "victim", func(ctx context.Context, _ []any, _ map[string]any) (any, error) {
		te.active.terminate(map[string]bool{"victim": true}, "SIGTERM")
		<-ctx.Done()
		return nil, ctx.Err()
	}, TaskOptions{})
	if out := te.run(j); !out.terminated {
		t.Errorf("outcome %+v, want terminated", out)
	}
}

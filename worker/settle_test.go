package worker

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// settled runs settle for j as the executor would after a run that
// returned out, j having begun as an early or late task.
func (te *testExecutor) settled(t *testing.T, j *job, late bool, out outcome) {
	t.Helper()
	if out.req == nil {
		out.req = &Request{}
	}
	if !late {
		j.ack(te.log)
	}
	te.settle(j, late, out)
}

func TestSettleStoresAFailure(t *testing.T) {
	te := newTestExecutor(t, nil)
	j := testJob(t, "t", "fails", nil, lateTask())
	j.msg.Errbacks = []protocol.Signature{{}}
	exc := protocol.NewException("KeyError", "k")
	te.settled(t, j, true, outcome{exc: exc, traceback: "tb"})
	if got := te.backend.states("fails"); !reflect.DeepEqual(got, []result.State{result.Failure}) {
		t.Errorf("stored %v", got)
	}
	if got := j.delivery().outcome(); !reflect.DeepEqual(got, []string{"ack"}) {
		t.Errorf("settled %v", got)
	}
	if te.followups.failure != 1 || te.counts.failed.Load() != 1 {
		t.Errorf("errbacks %d, failed %d", te.followups.failure, te.counts.failed.Load())
	}
	if got := te.eventTypes(); !reflect.DeepEqual(got, []string{EventTaskFailed}) {
		t.Errorf("events %v", got)
	}
}

func TestSettleRetries(t *testing.T) {
	te := newTestExecutor(t, nil)
	j := testJob(t, "t", "again", nil, TaskOptions{})
	te.settled(t, j, false, outcome{retry: &RetryError{Err: errors.New("later"), Countdown: -1}})
	if got := te.backend.states("again"); !reflect.DeepEqual(got, []result.State{result.Retry}) {
		t.Errorf("stored %v", got)
	}
	if te.followups.retry != 1 || te.counts.retried.Load() != 1 {
		t.Errorf("retries published %d, counted %d", te.followups.retry, te.counts.retried.Load())
	}

	// Past its retry limit the task fails.
	spent := testJob(t, "t", "spent", nil, TaskOptions{})
	spent.msg.Retries = 3
	te.settled(t, spent, false, outcome{retry: &RetryError{Countdown: -1}})
	m := te.backend.metas()
	if last := m[len(m)-1]; last.TaskID != "spent" || last.Status != result.Failure {
		t.Fatalf("stored %+v", last)
	} else if typ, _ := last.Result.(protocol.Dict).Get("exc_type"); typ != "MaxRetriesExceededError" {
		t.Errorf("exception %v", last.Result)
	}

	// A worker that cannot publish cannot retry.
	te.executor.followups.f = nil
	stuck := testJob(t, "t", "stuck", nil, TaskOptions{})
	te.settled(t, stuck, false, outcome{retry: &RetryError{Countdown: -1}})
	if got := te.backend.states("stuck"); !reflect.DeepEqual(got, []result.State{result.Failure}) {
		t.Errorf("stored %v", got)
	}
}

func TestSettleATerminatedTask(t *testing.T) {
	te := newTestExecutor(t, nil)
	j := testJob(t, "t", "term", nil, lateTask())
	j.signal = "SIGKILL"
	te.settled(t, j, true, outcome{value: "dropped", terminated: true})
	if got := te.backend.states("term"); !reflect.DeepEqual(got, []result.State{result.Revoked}) {
		t.Errorf("stored %v", got)
	}
	if ev := te.events.got; len(ev) != 1 || !ev[0].Terminated || ev[0].Signal != "SIGKILL" {
		t.Errorf("events %+v", ev)
	}
	if got := j.delivery().outcome(); !reflect.DeepEqual(got, []string{"ack"}) {
		t.Errorf("settled %v", got)
	}
}

func TestSettleAfterAColdShutdown(t *testing.T) {
	te := newTestExecutor(t, nil)
	te.cancel()
	late := testJob(t, "t", "late", nil, lateTask())
	te.settled(t, late, true, outcome{err: context.Canceled, exc: protocol.NewException("Exception", "cancelled")})
	if got := late.delivery().outcome(); !reflect.DeepEqual(got, []string{"requeue"}) {
		t.Errorf("acks_late: settled %v, want it back in the queue", got)
	}
	if got := te.backend.states("late"); len(got) != 0 {
		t.Errorf("acks_late: stored %v", got)
	}

	early := testJob(t, "t", "early", nil, TaskOptions{})
	te.settled(t, early, false, outcome{err: context.Canceled, exc: protocol.NewException("Exception", "cancelled")})
	m := te.backend.metas()
	if len(m) != 1 || m[0].Status != result.Failure {
		t.Fatalf("early: stored %+v", m)
	}
	if typ, _ := m[0].Result.(protocol.Dict).Get("exc_type"); typ != "WorkerLostError" {
		t.Errorf("early: exception %v", m[0].Result)
	}
}

func TestSettleWhenTheResultCannotBeStored(t *testing.T) {
	te := newTestExecutor(t, nil)
	te.cancel() // no waits between store retries
	te.backend.fail = func(int) error { return errors.New("store down") }
	late := testJob(t, "t", "late", nil, lateTask())
	te.settled(t, late, true, outcome{value: int64(1)})
	if got := late.delivery().outcome(); !reflect.DeepEqual(got, []string{"requeue"}) {
		t.Errorf("acks_late: settled %v, want it back in the queue", got)
	}
	if got := te.eventTypes(); got[len(got)-1] != EventTaskRejected {
		t.Errorf("events %v", got)
	}

	early := testJob(t, "t", "early", nil, TaskOptions{})
	te.settled(t, early, false, outcome{value: int64(1)})
	if te.pending.len() != 1 {
		t.Errorf("%d results pending, want the early task's", te.pending.len())
	}
}

func TestSettleFailsAResultTheBackendCannotEncode(t *testing.T) {
	te := newTestExecutor(t, nil)
	te.backend.fail = func(call int) error {
		if call == 1 {
			return &protocol.EncodeError{Msg: "chan int"}
		}
		return nil
	}
	j := testJob(t, "t", "enc", nil, lateTask())
	te.settled(t, j, true, outcome{value: make(chan int)})
	if got := te.backend.states("enc"); !reflect.DeepEqual(got, []result.State{result.Failure}) {
		t.Errorf("stored %v", got)
	}
	if got := j.delivery().outcome(); !reflect.DeepEqual(got, []string{"ack"}) {
		t.Errorf("settled %v", got)
	}
}

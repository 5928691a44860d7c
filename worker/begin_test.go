package worker

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/result"
)

func lateTask() TaskOptions {
	late := true
	return TaskOptions{AcksLate: &late}
}

func TestBeginAcknowledgesEarly(t *testing.T) {
	te := newTestExecutor(t, nil)
	j := testJob(t, "t", "early", nil, TaskOptions{})
	if late, run := te.begin(j); late || !run {
		t.Fatalf("late %v, run %v", late, run)
	}
	if got := j.delivery().outcome(); !reflect.DeepEqual(got, []string{"ack"}) {
		t.Errorf("settled %v", got)
	}

	failing := testJob(t, "t", "ack-fails", nil, TaskOptions{})
	failing.delivery().ackErr = errors.New("channel closed")
	if _, run := te.begin(failing); run {
		t.Fatal("runs a task whose early ack failed: the broker delivers it again")
	}
	if te.logs.FilterField(zap.String("reason", "ack-failed")).Len() != 1 {
		t.Error("the failed early ack is not logged")
	}
}

func TestBeginDiscardsRevokedAndExpiredTasks(t *testing.T) {
	te := newTestExecutor(t, nil)
	te.revocation.set.Add("revoked")
	revoked := testJob(t, "t", "revoked", nil, lateTask())
	expired := testJob(t, "t", "expired", nil, lateTask())
	past := time.Now().Add(-time.Minute)
	expired.msg.Expires = &past
	for _, j := range []*job{revoked, expired} {
		if _, run := te.begin(j); run {
			t.Fatalf("%s runs", j.msg.ID)
		}
		if got := te.backend.states(j.msg.ID); !reflect.DeepEqual(got, []result.State{result.Revoked}) {
			t.Errorf("%s: stored %v", j.msg.ID, got)
		}
		if got := j.delivery().outcome(); !reflect.DeepEqual(got, []string{"ack"}) {
			t.Errorf("%s: settled %v", j.msg.ID, got)
		}
	}
}

func TestBeginDoesNotStartAStaleDelivery(t *testing.T) {
	te := newTestExecutor(t, nil)
	j := testJob(t, "t", "stale", nil, lateTask())
	j.delivery().stale = true
	if late, run := te.begin(j); !late || run {
		t.Fatalf("late %v, run %v", late, run)
	}
	if got := j.delivery().outcome(); len(got) != 0 || !j.acked {
		t.Errorf("settled %v, acked %v: a stale delivery cannot be settled", got, j.acked)
	}
}

func TestBeginParksARedeliveredCopyOfARunningTask(t *testing.T) {
	te := newTestExecutor(t, nil)
	first := testJob(t, "t", "dup", nil, lateTask())
	twin := testJob(t, "t", "dup", nil, lateTask())
	twin.d.Raw().Redelivered = true
	if _, run := te.begin(first); !run {
		t.Fatal("the first delivery does not run")
	}
	if _, run := te.begin(twin); run {
		t.Fatal("a copy of a running task runs")
	}
	if got := twin.delivery().outcome(); len(got) != 0 {
		t.Fatalf("the parked copy is settled before the run ends: %v", got)
	}
	te.endRun(first)
	if got := twin.delivery().outcome(); !reflect.DeepEqual(got, []string{"ack"}) {
		t.Errorf("copy settled %v, want the run's ack", got)
	}
	// The id is free again.
	again := testJob(t, "t", "dup", nil, lateTask())
	if _, run := te.begin(again); !run {
		t.Error("a later delivery of the id does not run")
	}
	te.endRun(again)
}

// A retry the running task sent (retries one higher), delivered before the
// run has ended, is new work: it runs, and so does the same id sent again
// (not a redelivery). Parked as copies, both were acknowledged with the
// run's outcome and never ran.
func TestBeginRunsARetryOfARunningTask(t *testing.T) {
	te := newTestExecutor(t, nil)
	first := testJob(t, "t", "retrying", nil, lateTask())
	if _, run := te.begin(first); !run {
		t.Fatal("the first delivery does not run")
	}
	retry := testJob(t, "t", "retrying", nil, lateTask())
	retry.msg.Retries = 1
	if _, run := te.begin(retry); !run {
		t.Fatal("a retry sent by the running task does not run")
	}
	resent := testJob(t, "t", "retrying", nil, lateTask())
	if _, run := te.begin(resent); !run {
		t.Fatal("the id sent again (not redelivered) does not run")
	}
	// A redelivered copy of the retry is parked behind the retry's run.
	copyOfRetry := testJob(t, "t", "retrying", nil, lateTask())
	copyOfRetry.msg.Retries = 1
	copyOfRetry.d.Raw().Redelivered = true
	if _, run := te.begin(copyOfRetry); run {
		t.Fatal("a redelivered copy of the running retry runs")
	}
	te.endRun(resent) // not recorded: settles nothing
	te.endRun(first)
	if got := copyOfRetry.delivery().outcome(); len(got) != 0 {
		t.Fatalf("the copy of the retry settled with the first run: %v", got)
	}
	te.endRun(retry)
	if got := copyOfRetry.delivery().outcome(); !reflect.DeepEqual(got, []string{"ack"}) {
		t.Errorf("copy of the retry settled %v, want the retry run's ack", got)
	}
}

func TestBeginFailsAPoisonMessage(t *testing.T) {
	te := newTestExecutor(t, func(e *executor) { e.maxRedeliveries = 2 })
	j := testJob(t, "t", "poison", nil, lateTask())
	j.d.Raw().Redelivered = true
	d := j.delivery()
	d.count, d.counted = 3, true
	if late, run := te.begin(j); !late || run {
		t.Fatalf("late %v, run %v", late, run)
	}
	if got := te.backend.states("poison"); !reflect.DeepEqual(got, []result.State{result.Failure}) {
		t.Errorf("stored %v", got)
	}
	if got := d.outcome(); !reflect.DeepEqual(got, []string{"reject"}) {
		t.Errorf("settled %v", got)
	}
	// Its run entry is gone: a new delivery of the id is not parked.
	ok := testJob(t, "t", "poison", nil, lateTask())
	ok.d.Raw().Redelivered = true
	ok.delivery().count, ok.delivery().counted = 2, true
	if _, run := te.begin(ok); !run {
		t.Error("a delivery within the cap does not run")
	}
	te.endRun(ok)
}

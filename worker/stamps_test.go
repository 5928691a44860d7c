package worker_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// sendStamped sends a task stamped as a Celery 5.5 producer stamps it.
func (e *opsEnv) sendStamped(id, task string, eta *time.Time, stamps map[string]any) *opsDelivery {
	e.t.Helper()
	names := []any{}
	for n := range stamps {
		names = append(names, n)
	}
	msg := &protocol.Message{ID: id, Task: task, Args: []any{int64(1), int64(2)}, Kwargs: map[string]any{}, ETA: eta,
		Headers: map[string]any{"stamped_headers": names, "stamps": stamps, "replaced_task_nesting": int64(0)}}
	if task == "t.block" {
		msg.Args = nil
	}
	raw, err := protocol.Encode(msg, protocol.EncodeOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	raw.RoutingKey = "q"
	d := &opsDelivery{raw: raw, settled: make(chan string, 2)}
	e.broker.q("q") <- d
	return d
}

func TestStampRevokedTaskReceivedLaterIsNotRun(t *testing.T) {
	e := newOpsEnv(t, 2)
	got := e.w.RevokeByStamps(map[string][]any{"mtask_id": {"gone"}}, false, "SIGTERM")
	if got.Terminated != nil || got.Matched != nil {
		t.Fatalf("revoke without terminate: %+v", got)
	}
	d := e.sendStamped("s-1", "t.add", nil, map[string]any{"mtask_id": "gone"})
	if got := revokedReason(t, e.waitStored("s-1")); got != "revoked" {
		t.Fatalf("reason %q", got)
	}
	if s := waitOn(t, d.settled, "ack"); s != "ack" {
		t.Fatalf("message %s, want ack", s)
	}
	e.waitEvent(worker.EventTaskRevoked, "s-1")
	// A list-valued stamp with the revoked value among its elements.
	e.sendStamped("s-2", "t.add", nil, map[string]any{"mtask_id": []any{"kept", "gone"}})
	if got := revokedReason(t, e.waitStored("s-2")); got != "revoked" {
		t.Fatalf("reason %q", got)
	}
	// Other stamp values, and unstamped tasks, still run.
	e.sendStamped("s-3", "t.add", nil, map[string]any{"mtask_id": "kept"})
	if m := e.waitStored("s-3"); m.Status != result.Success {
		t.Fatalf("state %s", m.Status)
	}
	e.send("q", "plain", "t.add", []any{int64(1), int64(2)}, nil)
	if m := e.waitStored("plain"); m.Status != result.Success {
		t.Fatalf("state %s", m.Status)
	}
	if ids := e.w.RevokedSet().IDs(); len(ids) != 0 {
		t.Errorf("revoking stamps revoked ids %v", ids)
	}
	if got := e.w.RevokedStamps(); !reflect.DeepEqual(got, map[string][]any{"mtask_id": {"gone"}}) {
		t.Errorf("revoked stamps %v", got)
	}
}

func TestStampRevokeOfAHeldETATaskDiscardsItNow(t *testing.T) {
	e := newOpsEnv(t, 2)
	eta := time.Now().Add(time.Hour)
	d := e.sendStamped("eta-s", "t.add", &eta, map[string]any{"batch": "b1"})
	e.sendStamped("eta-other", "t.add", &eta, map[string]any{"batch": "b2"})
	e.waitEvent(worker.EventTaskReceived, "eta-s")
	waitFor(t, "both scheduled", 10*time.Second, func() bool { return len(e.w.Inspector().Scheduled()) == 2 })
	e.w.RevokeByStamps(map[string][]any{"batch": {"b1"}}, false, "SIGTERM")
	if got := revokedReason(t, e.waitStored("eta-s")); got != "revoked" {
		t.Fatalf("reason %q", got)
	}
	if s := waitOn(t, d.settled, "ack"); s != "ack" {
		t.Fatalf("message %s", s)
	}
	if s := e.w.Inspector().Scheduled(); len(s) != 1 || s[0].Request.ID != "eta-other" {
		t.Fatalf("scheduled %+v, want eta-other alone", s)
	}
}

func TestStampTerminateCancelsARunningTask(t *testing.T) {
	e := newOpsEnv(t, 2)
	d := e.sendStamped("run-s", "t.block", nil, map[string]any{"batch": []any{"b1", "b2"}})
	waitOn(t, e.running, "the stamped task to start")
	e.sendStamped("run-other", "t.block", nil, map[string]any{"batch": "b3"})
	waitOn(t, e.running, "the other task to start")
	got := e.w.RevokeByStamps(map[string][]any{"batch": {"b2", "b9"}}, true, "SIGKILL")
	want := worker.StampRevocation{Terminated: []string{"run-s"}, Matched: map[string][]any{"batch": {"b2"}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if cause := waitOn(t, e.ctxErr, "the task's context to end"); !errors.Is(cause, worker.ErrTerminated) {
		t.Fatalf("cause %v", cause)
	}
	if got := revokedReason(t, e.waitStored("run-s")); got != "terminated" {
		t.Fatalf("reason %q", got)
	}
	if ev := e.waitEvent(worker.EventTaskRevoked, "run-s"); !ev.Terminated || ev.Signal != "SIGKILL" {
		t.Fatalf("event %+v", ev)
	}
	if s := waitOn(t, d.settled, "ack"); s != "ack" {
		t.Fatalf("message %s", s)
	}
	if act := e.w.Inspector().Active(); len(act) != 1 || act[0].ID != "run-other" {
		t.Fatalf("active %+v, want run-other still running", act)
	}
}

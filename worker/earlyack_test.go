package worker_test

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/gworker/gworker/worker"
)

// With early acknowledgement, a task whose ack fails (the connection died
// under it) must not run: the broker still holds the message and will
// deliver it again, so running it now would run it twice. Nothing is
// stored for it either.
func TestEarlyAckFailureDoesNotRun(t *testing.T) {
	var runs atomic.Int64
	reg := worker.NewRegistry()
	if err := reg.Register("tasks.count", func() (int64, error) { return runs.Add(1), nil }); err != nil {
		t.Fatal(err)
	}
	e := newFakeEnv(t, reg, nil)
	failed := e.broker.deliver(taskRaw(t, "tasks.count", "ack-fails"), errors.New("connection closed"))
	e.broker.waitSettled(t, 1)
	ok := e.broker.deliver(taskRaw(t, "tasks.count", "ack-works"), nil)
	e.broker.waitSettled(t, 1)
	// The second task's result is stored after it ran; wait for it.
	for id := range e.backend.calls {
		if id == "ack-works" {
			break
		}
	}
	if got := runs.Load(); got != 1 {
		t.Errorf("%d runs, want 1 (only the task whose ack succeeded)", got)
	}
	if got := e.broker.c.outcome(failed); len(got) != 1 || got[0] != "ack" {
		t.Errorf("failed ack: %v", got)
	}
	if got := e.broker.c.outcome(ok); len(got) != 1 || got[0] != "ack" {
		t.Errorf("good ack: %v", got)
	}
	for _, k := range e.backend.keys() {
		if k == "ack-fails" {
			t.Error("a result was stored for the task that did not run")
		}
	}
}

package worker_test

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// runCounter is a task that counts its runs by id.
type runCounter struct {
	mu   sync.Mutex
	runs map[string]int
}

func (c *runCounter) register(t *testing.T, reg *worker.Registry) {
	t.Helper()
	c.runs = map[string]int{}
	if err := reg.Register("tasks.once", func(ctx context.Context) (string, error) {
		req, _ := worker.RequestFromContext(ctx)
		c.mu.Lock()
		c.runs[req.ID]++
		c.mu.Unlock()
		return "done", nil
	}); err != nil {
		t.Fatal(err)
	}
}

func (c *runCounter) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runs[id]
}

func redelivered(t *testing.T, id string, retries int) *protocol.RawMessage {
	t.Helper()
	raw, err := protocol.Encode(&protocol.Message{ID: id, Task: "tasks.once", Args: []any{}, Kwargs: map[string]any{}, Retries: retries}, protocol.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw.Redelivered = true
	return raw
}

// An acks_late task whose ack was lost finished here: the copy the broker
// delivers again is acknowledged without a second run, and nothing more is
// stored; a copy with a higher retries header (a retry) runs.
func TestRedeliveredCopyOfAFinishedTaskDoesNotRunAgain(t *testing.T) {
	reg := worker.NewRegistry()
	var c runCounter
	c.register(t, reg)
	e := newFakeEnv(t, reg, func(cfg *worker.Config) { cfg.AcksLate = true })
	e.broker.deliver(taskRaw(t, "tasks.once", "lost-ack"), errors.New("connection closed"))
	e.broker.waitSettled(t, 1)
	e.backend.mu.Lock()
	stores := len(e.backend.stored["lost-ack"])
	e.backend.stored = map[string][]*result.Meta{} // not the backend: this worker's memory
	e.backend.mu.Unlock()

	copy1 := e.broker.deliver(redelivered(t, "lost-ack", 0), nil)
	e.broker.waitSettled(t, 1)
	if got := e.broker.c.outcome(copy1); !reflect.DeepEqual(got, []string{"ack"}) {
		t.Errorf("copy settled %v, want [ack]", got)
	}
	if n := c.count("lost-ack"); n != 1 {
		t.Errorf("%d runs, want 1", n)
	}
	if len(e.backend.keys()) != 0 || stores != 1 {
		t.Errorf("stored again: %v (first run stored %d)", e.backend.keys(), stores)
	}

	retry := e.broker.deliver(redelivered(t, "lost-ack", 1), nil)
	e.broker.waitSettled(t, 1)
	if got := e.broker.c.outcome(retry); !reflect.DeepEqual(got, []string{"ack"}) {
		t.Errorf("retry settled %v", got)
	}
	if n := c.count("lost-ack"); n != 2 {
		t.Errorf("%d runs, want 2: a retry (retries 1) must run", n)
	}
}

// A redelivered copy of a task whose result is SUCCESS in the backend (it
// finished elsewhere, or before a restart) is acknowledged without running;
// one whose result is not final runs.
func TestRedeliveredCopyOfASucceededTaskDoesNotRun(t *testing.T) {
	reg := worker.NewRegistry()
	var c runCounter
	c.register(t, reg)
	e := newFakeEnv(t, reg, func(cfg *worker.Config) { cfg.AcksLate = true })
	ok := &result.Meta{TaskID: "done-elsewhere", Status: result.Success, Result: "earlier"}
	e.backend.mu.Lock()
	e.backend.stored["done-elsewhere"] = []*result.Meta{ok}
	e.backend.mu.Unlock()

	d := e.broker.deliver(redelivered(t, "done-elsewhere", 0), nil)
	e.broker.waitSettled(t, 1)
	if got := e.broker.c.outcome(d); !reflect.DeepEqual(got, []string{"ack"}) {
		t.Errorf("settled %v, want [ack]", got)
	}
	if n := c.count("done-elsewhere"); n != 0 {
		t.Errorf("%d runs, want 0", n)
	}
	e.backend.mu.Lock()
	if ms := e.backend.stored["done-elsewhere"]; len(ms) != 1 || ms[0] != ok {
		t.Errorf("stored result changed: %v", ms)
	}
	e.backend.mu.Unlock()

	d = e.broker.deliver(redelivered(t, "never-finished", 0), nil)
	e.broker.waitSettled(t, 1)
	if n := c.count("never-finished"); n != 1 {
		t.Errorf("%d runs of a task with no result, want 1", n)
	}
}

// A task whose result could not be stored goes back to the queue: its copy
// must run again.
func TestRequeuedTaskRunsAgain(t *testing.T) {
	reg := worker.NewRegistry()
	var c runCounter
	c.register(t, reg)
	e := newFakeEnv(t, reg, func(cfg *worker.Config) { cfg.AcksLate = true })
	e.backend.setFail(errors.New("store down"))
	d := e.broker.deliver(taskRaw(t, "tasks.once", "requeued"), nil)
	e.broker.waitSettled(t, 1)
	if got := e.broker.c.outcome(d); !reflect.DeepEqual(got, []string{"requeue"}) {
		t.Fatalf("settled %v, want [requeue]", got)
	}
	e.backend.setFail(nil)
	// The copy can arrive before the first run has quite ended (its
	// message was requeued just before): it is then parked and requeued
	// with the run's outcome, and the broker delivers it again, as here.
	for i := 0; ; i++ {
		d = e.broker.deliver(redelivered(t, "requeued", 0), nil)
		e.broker.waitSettled(t, 1)
		got := e.broker.c.outcome(d)
		if reflect.DeepEqual(got, []string{"ack"}) {
			break
		}
		if !reflect.DeepEqual(got, []string{"requeue"}) || i == 20 {
			t.Fatalf("copy %d settled %v, want [ack] (or [requeue] while the first run ends)", i, got)
		}
	}
	if n := c.count("requeued"); n != 2 {
		t.Errorf("%d runs, want 2", n)
	}
}

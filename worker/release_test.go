package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// gatedBackend holds the Store of task "slow" until gate is closed.
type gatedBackend struct {
	*fakeBackend
	gate    chan struct{}
	holding chan struct{}
}

func (b *gatedBackend) Store(ctx context.Context, m *result.Meta) error {
	if m.TaskID == "slow" {
		close(b.holding)
		<-b.gate
	}
	return b.fakeBackend.Store(ctx, m)
}

// gatedEnv is a one-slot acks_late worker whose task tasks.mark sends the
// id of each run on ran, over a gatedBackend.
func gatedEnv(t *testing.T) (e *fakeEnv, gb *gatedBackend, ran chan string) {
	t.Helper()
	ran = make(chan string, 10)
	reg := worker.NewRegistry()
	if err := reg.Register("tasks.mark", func(ctx context.Context) (string, error) {
		req, _ := worker.RequestFromContext(ctx)
		ran <- req.ID
		return req.ID, nil
	}); err != nil {
		t.Fatal(err)
	}
	gb = &gatedBackend{fakeBackend: newFakeBackend(), gate: make(chan struct{}), holding: make(chan struct{})}
	e = newFakeEnv(t, reg, func(c *worker.Config) {
		c.Backend, c.Concurrency, c.AcksLate = gb, 1, true
	})
	return e, gb, ran
}

// A task's pool slot is free once the task returned: with one slot, the
// next task runs while the last one's result is still being stored. Under
// acks_late that message is still acknowledged only after its result is
// stored.
func TestSlotRunsTheNextTaskWhileAResultIsStored(t *testing.T) {
	e, gb, ran := gatedEnv(t)
	slow := e.broker.deliver(taskRaw(t, "tasks.mark", "slow"), nil)
	<-gb.holding
	next := e.broker.deliver(taskRaw(t, "tasks.mark", "next"), nil)
	for _, want := range []string{"slow", "next"} {
		select {
		case id := <-ran:
			if id != want {
				t.Fatalf("ran %s, want %s", id, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not run while the first result was being stored", want)
		}
	}
	e.broker.waitSettled(t, 1)
	if got := e.broker.c.outcome(next); len(got) != 1 || got[0] != "ack" {
		t.Fatalf("next: %v", got)
	}
	if got := e.broker.c.outcome(slow); len(got) != 0 {
		t.Fatalf("acks_late message settled before its result was stored: %v", got)
	}
	close(gb.gate)
	e.broker.waitSettled(t, 1)
	if got := e.broker.c.outcome(slow); len(got) != 1 || got[0] != "ack" {
		t.Fatalf("slow: %v", got)
	}
}

// A warm shutdown waits for a task whose slot was released: its result is
// stored and its message acknowledged before Run returns.
func TestWarmShutdownWaitsForAReleasedTask(t *testing.T) {
	e, gb, _ := gatedEnv(t)
	slow := e.broker.deliver(taskRaw(t, "tasks.mark", "slow"), nil)
	<-gb.holding
	e.cancel()
	// A Run that did not wait would return while the store is held; give
	// it the chance before letting the store go on.
	go func() {
		time.Sleep(200 * time.Millisecond)
		close(gb.gate)
	}()
	select {
	case err := <-e.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("Run: %v", err)
		}
		e.done <- err // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	if got := e.broker.c.outcome(slow); len(got) != 1 || got[0] != "ack" {
		t.Fatalf("Run returned before the released task was settled: %v", got)
	}
	if m, _ := gb.Get(context.Background(), "slow"); m.Status != result.Success {
		t.Fatalf("stored %s, want SUCCESS", m.Status)
	}
}

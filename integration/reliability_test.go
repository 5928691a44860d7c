package integration

import (
	"fmt"
	"testing"
)

// TestHeldETADoesNotStarve sends more far-future countdown tasks than the
// prefetch window: as in Celery, held ETA messages must not block the
// tasks behind them, and a warm shutdown returns them to the queue.
func TestHeldETADoesNotStarve(t *testing.T) {
	t.Parallel()
	const held = 5
	q := uniqueQueue(t, "eta")
	w := startWorker(t, workerOptions{Queues: []string{q}, Concurrency: 1, Prefetch: 1})
	r := pyClient{Conf: map[string]any{"task_default_queue": q}}.run(t, fmt.Sprintf(`
later = [send('tasks.add', (i, i), countdown=3600).id for i in range(%d)]
emit(later=later, now=call('tasks.add', (1, 1)))
`, held))
	wantValue(t, "a task behind held countdown tasks", r.outcome(t, "now"), "2", "int")
	var later []string
	r.get(t, "later", &later)
	for _, id := range later {
		if m := getMeta(t, id); m != nil {
			t.Errorf("countdown task %s ran an hour early: %s", id, m.Status)
		}
	}
	if err := w.stop(defaultWait); err != nil {
		t.Errorf("warm shutdown: %v", err)
	}
	if ready, unacked := queueCounts(t, q); ready != held || unacked != 0 {
		t.Errorf("after shutdown: %d ready, %d unacked; want the %d held messages back in the queue", ready, unacked, held)
	}
}

// TestDuplicateTaskID publishes two tasks with the same id: both run, and
// the first SUCCESS stays stored, as with Celery's Redis backend.
func TestDuplicateTaskID(t *testing.T) {
	t.Parallel()
	q := uniqueQueue(t, "dupid")
	w := startWorker(t, workerOptions{Queues: []string{q}, Concurrency: 1})
	id := "dup-" + randomSuffix()
	trackTasks(t, id)
	r := pyClient{Conf: map[string]any{"task_default_queue": q}}.run(t, fmt.Sprintf(`
first = send('tasks.add', (1, 2), task_id=%[1]s)
emit(first=describe(lambda: first.get(timeout=TIMEOUT)))
second = send('tasks.add', (10, 20), task_id=%[1]s)
`, pyString(id)))
	wantValue(t, "first task", r.outcome(t, "first"), "3", "int")
	if !eventually(defaultWait, func() bool { return w.countLog("["+id+"] succeeded") == 2 }) {
		t.Fatalf("the duplicate did not run; log:\n%s", w.log())
	}
	if m := waitMeta(t, id, defaultWait, "SUCCESS"); string(m.Result) != "3" {
		t.Errorf("stored result %s after the duplicate, want the first SUCCESS, 3", m.Result)
	}
}

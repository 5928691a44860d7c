package integration

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gworker/gworker/internal/testing/testenv"
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
	id := "dup-" + testenv.Suffix()
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

// TestBrokerConnectionDrop closes every connection of the worker's vhost
// while an acks_late task runs (it sleeps long enough to still be running
// when rabbitmqctl gets to it on a loaded machine, where rabbitmqctl alone
// was seen to take 7 s). The worker must reconnect and keep
// consuming, and the interrupted task must still end in SUCCESS.
func TestBrokerConnectionDrop(t *testing.T) {
	t.Parallel()
	vhost, url := privateVhost(t)
	q := uniqueQueue(t, "drop")
	w := startWorker(t, workerOptions{Queues: []string{q}, Concurrency: 2, Broker: url, Extra: []string{"--acks-late"}})
	client := pyClient{Broker: url, Conf: map[string]any{"task_default_queue": q}}
	r := client.run(t, `
emit(before=call('tasks.add', (1, 1)), slow=send('tasks.sleep', (20,)).id)
`)
	wantValue(t, "add before the drop", r.outcome(t, "before"), "2", "int")
	var slow string
	r.get(t, "slow", &slow)
	if !w.waitLog("tasks.sleep["+slow+"] received", defaultWait) {
		t.Fatalf("the sleep task was not received; log:\n%s", w.log())
	}
	out, err := rabbitmqctl("close_all_connections", "-p", vhost, "integration test: connection drop")
	if err != nil {
		t.Fatalf("rabbitmqctl close_all_connections: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Closed") || strings.Contains(string(out), "Closed 0 ") {
		t.Fatalf("rabbitmqctl closed no connection:\n%s", out)
	}
	r = client.run(t, `
emit(after=call('tasks.add', (2, 3)))
`)
	wantValue(t, "add after the drop", r.outcome(t, "after"), "5", "int")
	if m := waitMeta(t, slow, 2*defaultWait, "SUCCESS"); string(m.Result) != "20" {
		t.Errorf("interrupted task result %s, want 20", m.Result)
	}
	// Its message was not acknowledged when the channel closed, so the
	// broker redelivered it (at least once).
	if !eventually(defaultWait, func() bool { return w.countLog("tasks.sleep["+slow+"] received") >= 2 }) {
		t.Errorf("the interrupted task was not redelivered; log:\n%s", w.log())
	}
	w.requireAlive()
	if !eventually(defaultWait, func() bool {
		ready, unacked := queueCountsIn(t, vhost, q)
		return ready == 0 && unacked == 0
	}) {
		ready, unacked := queueCountsIn(t, vhost, q)
		t.Errorf("queue after the drop: %d ready, %d unacked; want empty", ready, unacked)
	}
}

// TestWorkerKilled kills an acks_late worker with SIGKILL while it runs
// tasks: nothing is lost, a new worker runs every task.
func TestWorkerKilled(t *testing.T) {
	t.Parallel()
	q := uniqueQueue(t, "killed")
	opts := workerOptions{Queues: []string{q}, Concurrency: 2, Extra: []string{"--acks-late"}}
	w1 := startWorker(t, opts)
	r := pyClient{Conf: map[string]any{"task_default_queue": q}}.run(t, `
emit(ids=[send('tasks.sleep', (1,)).id for _ in range(4)] + [send('tasks.add', (i, 1)).id for i in range(4)])
`)
	var ids []string
	r.get(t, "ids", &ids)
	if !eventually(defaultWait, func() bool { return w1.countLog("] received") >= 2 }) {
		t.Fatalf("worker received nothing; log:\n%s", w1.log())
	}
	w1.kill()
	startWorker(t, opts)
	for _, id := range ids {
		waitMeta(t, id, defaultWait, "SUCCESS")
	}
}

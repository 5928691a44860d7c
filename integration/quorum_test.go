package integration

import (
	"fmt"
	"strings"
	"testing"
)

// quorumQueueConf is the Celery configuration of an app whose task queue
// is a quorum queue, as Celery documents it for 5.2 (queue_arguments).
func quorumQueueConf(q string) string {
	return fmt.Sprintf(`
from kombu import Exchange, Queue
Q = %s
app.conf.task_queues = [Queue(Q, Exchange(Q), routing_key=Q, queue_arguments={'x-queue-type': 'quorum'})]
app.conf.task_default_queue = Q
with app.connection_for_write() as conn:
    app.amqp.queues[Q](conn.default_channel).declare()
`, pyString(q))
}

// A queue declared as a quorum queue by Python is consumed by gworker,
// whose own declaration is kombu's classic one: no PRECONDITION_FAILED, no
// global QoS refused, ETA messages held while the rest keep flowing.
func TestPythonQuorumQueue(t *testing.T) {
	t.Parallel()
	vhost, broker := privateVhost(t)
	q := uniqueQueue(t, "quorum")
	py := pyClient{Broker: broker}
	py.run(t, quorumQueueConf(q))
	if typ := queueTypeIn(t, vhost, q); typ != "quorum" {
		t.Fatalf("Python declared a %s queue, want quorum", typ)
	}
	w := startWorker(t, workerOptions{Queues: []string{q}, Broker: broker, Concurrency: 2, Prefetch: 1})

	res := py.run(t, quorumQueueConf(q)+`
held = [send('tasks.add', (i, 1000), countdown=3) for i in range(4)]
now = [send('tasks.add', (i, 1)) for i in range(20)]
emit(now=[r.get(timeout=TIMEOUT) for r in now], held=[r.get(timeout=TIMEOUT) for r in held])
`)
	var now, held []int
	res.get(t, "now", &now)
	res.get(t, "held", &held)
	for i, v := range now {
		if v != i+1 {
			t.Errorf("now[%d] = %d, want %d", i, v, i+1)
		}
	}
	for i, v := range held {
		if v != i+1000 {
			t.Errorf("held[%d] = %d, want %d", i, v, i+1000)
		}
	}
	w.requireAlive()
	if !strings.Contains(w.log(), "queue exists with other arguments") {
		t.Error("worker did not log that it adopted the quorum queue")
	}
	for _, bad := range []string{"NOT_IMPLEMENTED", "connection lost", "consumer channel closed", "reconnect"} {
		if strings.Contains(w.log(), bad) {
			t.Errorf("worker log mentions %q", bad)
		}
	}
	if !strings.Contains(w.log(), "per-consumer prefetch") {
		t.Error("worker did not log that it consumes with per-consumer prefetch")
	}
	// Quorum queues report their counts with some delay.
	var ready, unacked int
	if !eventually(defaultWait, func() bool {
		ready, unacked = queueCountsIn(t, vhost, q)
		return ready == 0 && unacked == 0
	}) {
		t.Errorf("queue left with %d ready, %d unacked", ready, unacked)
	}
}

// queueTypeIn returns the type rabbitmqctl lists for a queue.
func queueTypeIn(t testing.TB, vhost, q string) string {
	t.Helper()
	out, err := rabbitmqctl("list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name", "type")
	if err != nil {
		t.Fatalf("rabbitmqctl list_queues: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == q {
			return f[1]
		}
	}
	t.Fatalf("queue %s not listed by rabbitmqctl:\n%s", q, out)
	return ""
}

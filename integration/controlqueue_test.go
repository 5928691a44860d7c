package integration

import (
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gworker/gworker/internal/testing/testenv"
)

// queueFlags returns the durable, auto_delete and exclusive flags
// rabbitmqctl lists for a queue of vhost.
func queueFlags(t testing.TB, vhost, q string) string {
	t.Helper()
	out, err := rabbitmqctl("list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name", "durable", "auto_delete", "exclusive")
	if err != nil {
		t.Fatalf("rabbitmqctl list_queues: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == q {
			return "durable=" + f[1] + " auto_delete=" + f[2] + " exclusive=" + f[3]
		}
	}
	t.Fatalf("queue %s not listed:\n%s", q, out)
	return ""
}

// pingedBy55 reports whether node answers Celery 5.5.3's `celery inspect
// ping`.
func pingedBy55(t testing.TB, broker, node string) (bool, string) {
	t.Helper()
	out, err := celery55CLI(t, 60*time.Second, "-b", broker, "inspect", "ping", "-d", node, "-t", "3")
	return err == nil && strings.Contains(out, "pong"), out
}

// --control-queue-exclusive and --control-queue-durable (Celery 5.6's
// control_queue_*): the node's pidbox queue is declared so, and the node
// answers Celery 5.5.3's `celery inspect ping` and gworker's own inspect,
// whose reply queue follows the same flags.
func TestControlQueueFlags(t *testing.T) {
	t.Parallel()
	vhost, broker := privateVhost(t)
	for _, c := range []struct{ flag, want string }{
		{"--control-queue-exclusive", "durable=false auto_delete=true exclusive=true"},
		{"--control-queue-durable", "durable=true auto_delete=false exclusive=false"},
	} {
		node := "go-" + testenv.Suffix() + "@ctl"
		q := uniqueQueue(t, "ctlq")
		w := startWorker(t, workerOptions{Queues: []string{q}, Broker: broker, Name: node, Extra: []string{c.flag}})
		if got := queueFlags(t, vhost, node+".celery.pidbox"); got != c.want {
			t.Errorf("%s: pidbox queue %s, want %s", c.flag, got, c.want)
		}
		if ok, out := pingedBy55(t, broker, node); !ok {
			t.Errorf("%s: celery 5.5.3 inspect ping got no pong:\n%s", c.flag, out)
		}
		out, errOut, code := runGworker(t, 60*time.Second, "inspect", "ping", "--broker", broker, "-d", node, c.flag)
		if code != 0 || !strings.Contains(out, "pong") {
			t.Errorf("%s: gworker inspect ping: exit %d\n%s%s", c.flag, code, out, errOut)
		}
		if err := w.stop(30 * time.Second); err != nil {
			t.Errorf("%s: worker exit: %v", c.flag, err)
		}
	}
}

// A node whose pidbox queue the broker refuses (here an exclusive queue
// of that name held by another connection, as a previous run of the same
// node can leave it for a while) says why, runs tasks all the same, and
// answers remote control once the queue is free.
func TestRefusedPidboxQueueKeepsConsuming(t *testing.T) {
	t.Parallel()
	_, broker := privateVhost(t)
	node := "go-" + testenv.Suffix() + "@locked"
	q := uniqueQueue(t, "locked")
	holder, err := amqp.Dial(broker)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	ch, err := holder.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(node+".celery.pidbox", false, true, true, false, nil); err != nil {
		t.Fatal(err)
	}
	w := startWorker(t, workerOptions{Queues: []string{q}, Broker: broker, Name: node, Extra: []string{"--control-queue-exclusive"}})
	if !strings.Contains(w.log(), "refused this node's pidbox queue") || !strings.Contains(w.log(), "RESOURCE_LOCKED") {
		t.Errorf("the worker does not say why its pidbox queue was refused:\n%s", w.log())
	}
	res := py55(t, broker, map[string]any{"task_default_queue": q}).run(t, `
emit(sum=send('tasks.add', (20, 22)).get(timeout=TIMEOUT))
`)
	var sum int
	res.get(t, "sum", &sum)
	if sum != 42 {
		t.Errorf("tasks.add(20, 22) = %d", sum)
	}
	if err := holder.Close(); err != nil {
		t.Fatal(err)
	}
	var out string
	if !eventually(90*time.Second, func() bool {
		var ok bool
		ok, out = pingedBy55(t, broker, node)
		return ok
	}) {
		t.Errorf("the node does not answer once its pidbox queue is free:\n%s", out)
	}
	w.requireAlive()
}

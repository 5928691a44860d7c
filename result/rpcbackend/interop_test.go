package rpcbackend_test

import (
	"bufio"
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/rpcbackend"
)

// pyClient sends tasks.add(2, 2) to the queue named by argv[2] with the
// rpc:// backend, prints the task id, then the result of get().
const pyClient = `
import sys
from celery import Celery
app = Celery('interop', broker=sys.argv[1], backend='rpc://')
r = app.send_task('tasks.add', (2, 2), queue=sys.argv[2])
print(r.id, flush=True)
print(repr(r.get(timeout=20)), flush=True)
`

// TestPythonClientReadsGoStore: a Python client with backend='rpc://'
// sends a task; Go reads the message and stores SUCCESS through the
// rpc backend; Python's AsyncResult.get() returns it.
func TestPythonClientReadsGoStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := dial(t)
	queue := "gworker.rpctest." + testenv.Suffix()
	t.Cleanup(func() { testenv.DeleteTaskQueue(t, queue) })

	cons, err := b.NewConsumer(ctx, amqptransport.ConsumerConfig{Queues: []amqptransport.Queue{amqptransport.TaskQueue(queue)}})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()

	cmd := exec.CommandContext(ctx, testenv.Python(), "-c", pyClient, testenv.CeleryBrokerURL(), queue)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", testenv.Python(), err)
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		_ = cmd.Wait()
		t.Fatalf("python printed no task id; stderr:\n%s", stderr.String())
	}
	pyID := strings.TrimSpace(lines.Text())

	var d *amqptransport.Delivery
	select {
	case dv := <-cons.Deliveries():
		d = dv.(*amqptransport.Delivery)
	case <-ctx.Done():
		t.Fatalf("no task message received; python stderr:\n%s", stderr.String())
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
	id, _ := d.Raw().Headers["id"].(string)
	if id != pyID || d.Raw().ReplyTo == "" {
		t.Fatalf("message id %q reply_to %q; python sent %q", id, d.Raw().ReplyTo, pyID)
	}

	worker := rpcbackend.NewAMQPWorkerSide(b)
	if err := worker.Store(ctx, &result.Meta{
		TaskID: id, Status: result.Success, Result: int64(4),
		ReplyTo: d.Raw().ReplyTo, CorrelationID: d.Raw().CorrelationID,
	}); err != nil {
		t.Fatal(err)
	}
	if !lines.Scan() {
		_ = cmd.Wait()
		t.Fatalf("python printed no result; stderr:\n%s", stderr.String())
	}
	if got := strings.TrimSpace(lines.Text()); got != "4" {
		t.Errorf("python get() = %s, want 4", got)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
}

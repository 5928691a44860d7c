package canvas_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/canvas"
	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
)

const pyTasks = `
from celery import Celery
app = Celery('canvastest')
app.conf.update(broker_url=BROKER, result_backend=BACKEND,
                task_default_queue=QUEUE, worker_hijack_root_logger=False)

@app.task(name='tasks.add')
def add(x, y):
    return x + y

@app.task(name='tasks.mul')
def mul(x, y):
    return x * y

@app.task(name='tasks.xsum')
def xsum(values):
    return sum(values)
`

// TestPythonWorkerRunsGoCanvas sends a chain, a group and a chord from Go
// to a real Celery worker and reads their results from Redis.
func TestPythonWorkerRunsGoCanvas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	queue := "gworker.canvas.test." + testenv.Suffix()

	b, err := amqptransport.Dial(ctx, amqptransport.Config{URL: testenv.AMQPURL()})
	if err != nil {
		t.Fatalf("RabbitMQ is required at %s (set AMQP_URL): %v", amqptransport.RedactURL(testenv.AMQPURL()), err)
	}
	defer b.Close()
	t.Cleanup(func() { testenv.DeleteTaskQueue(t, queue) })
	backend := redisbackend.New(testenv.Redis(t), redisbackend.Options{})

	dir := t.TempDir()
	src := "BROKER = " + testenv.PyQuote(testenv.CeleryBrokerURL()) + "\nBACKEND = " + testenv.PyQuote(testenv.RedisURL()) +
		"\nQUEUE = " + testenv.PyQuote(queue) + "\n" + pyTasks
	if err := os.WriteFile(filepath.Join(dir, "canvastasks.py"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(testenv.Python(), "-m", "celery", "-A", "canvastasks", "worker", "-P", "solo", "-Q", queue,
		"--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "WARNING", "-n", "canvastest-"+testenv.Suffix()+"@%h")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start celery worker: %v", err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("celery worker output:\n%s", logs.String())
		}
	}()

	p := producer.New(b, producer.Options{Backend: backend, DefaultQueue: queue})
	get := func(r *result.AsyncResult) any {
		t.Helper()
		v, err := r.Get(ctx, result.WithTimeout(60*time.Second))
		if err != nil {
			t.Fatalf("result of %s: %v", r.ID(), err)
		}
		forgetAll(r)
		return v
	}

	chainRes, err := canvas.Chain(canvas.Sig("tasks.add", 2, 2), canvas.Sig("tasks.mul", 10), canvas.Sig("tasks.add", 1)).ApplyAsync(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if v := get(chainRes); v != int64(41) {
		t.Errorf("chain = %v, want 41", v)
	}

	g, err := canvas.Group(canvas.Sig("tasks.add", 1, 1), canvas.Sig("tasks.mul", 3, 3)).ApplyAsync(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := g.Get(ctx, result.WithTimeout(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(vals, []any{int64(2), int64(9)}) {
		t.Errorf("group = %v", vals)
	}
	forgetAll(g)

	chordRes, err := canvas.Chord([]*canvas.Signature{
		canvas.Sig("tasks.add", 1, 1), canvas.Sig("tasks.add", 2, 2), canvas.Sig("tasks.add", 3, 3),
	}, canvas.Sig("tasks.xsum")).ApplyAsync(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if v := get(chordRes); v != int64(12) {
		t.Errorf("chord = %v, want 12", v)
	}
}

// forgetAll deletes the stored results of r and of its parents.
func forgetAll(r result.Result) {
	for r != nil {
		_ = r.Forget(context.Background())
		p, ok := r.(interface{ Parent() result.Result })
		if !ok {
			return
		}
		r = p.Parent()
	}
}

package canvas_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/canvas"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
)

const pyTasks = `
from celery import Celery
app = Celery('canvastest')
app.conf.update(broker_url=BROKER, result_backend='redis://127.0.0.1:6379/0',
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

func amqpURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

func pythonBin() string {
	if p := os.Getenv("PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}

// TestPythonWorkerRunsGoCanvas sends a chain, a group and a chord from Go
// to a real Celery worker and reads their results from Redis.
func TestPythonWorkerRunsGoCanvas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	queue := "gworker.canvas.test." + suffix()

	b, err := amqptransport.Dial(ctx, amqptransport.Config{URL: amqpURL()})
	if err != nil {
		t.Fatalf("RabbitMQ is required at %s (set AMQP_URL): %v", amqptransport.RedactURL(amqpURL()), err)
	}
	defer b.Close()
	t.Cleanup(func() { deleteTaskQueue(t, queue) })
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s is required: %v", redisAddr, err)
	}
	backend := redisbackend.New(rdb, redisbackend.Options{})

	dir := t.TempDir()
	celeryURL := amqpURL()
	if strings.HasSuffix(celeryURL, ":5672/") {
		celeryURL += "/"
	}
	src := "BROKER = " + pyQuote(celeryURL) + "\nQUEUE = " + pyQuote(queue) + "\n" + pyTasks
	if err := os.WriteFile(filepath.Join(dir, "canvastasks.py"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(pythonBin(), "-m", "celery", "-A", "canvastasks", "worker", "-P", "solo", "-Q", queue,
		"--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "WARNING", "-n", "canvastest-"+suffix()+"@%h")
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

	p := producer.NewAMQP(b, producer.Options{Backend: backend, DefaultQueue: queue})
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

// deleteTaskQueue removes the queue and the exchange of the same name that
// the worker declared.
func deleteTaskQueue(t *testing.T, name string) {
	t.Helper()
	conn, err := amqp.Dial(amqpURL())
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer ch.Close()
	if _, err := ch.QueueDelete(name, false, false, false); err != nil {
		t.Errorf("cleanup queue %s: %v", name, err)
	}
	if err := ch.ExchangeDelete(name, false, false); err != nil {
		t.Errorf("cleanup exchange %s: %v", name, err)
	}
}

func pyQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

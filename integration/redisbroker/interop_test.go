//go:build unix

package redisbroker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/gworker/gworker/demo"
	"github.com/gworker/gworker/followup"
	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/redistransport"
	"github.com/gworker/gworker/result/redisbackend"
	"github.com/gworker/gworker/worker"
)

func TestMain(m *testing.M) {
	// TestKilledGworkerLosesNothing runs a worker in a child process (this
	// test binary again) so that it can SIGKILL it.
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	goleak.VerifyTestMain(m)
}

const childEnv = "GWORKER_REDISWORKER_CHILD"

// runChild is the killed worker: prefix and visibility timeout from the
// environment, tasks.record appending "go:<n>" to the runs list.
func runChild() int {
	prefix, vt := os.Getenv("PREFIX"), os.Getenv("VT")
	log := zap.NewNop()
	ctx := context.Background()
	b, err := redistransport.Dial(ctx, redistransport.Config{URL: testenv.RedisURL(), Logger: log,
		TransportOptions: map[string]string{"global_keyprefix": prefix, "visibility_timeout": vt}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	reg := worker.NewRegistry()
	rc := b.Client()
	reg.MustRegister("tasks.record", func(ctx context.Context, n int64, sleep float64) (int64, error) {
		time.Sleep(time.Duration(sleep * float64(time.Second)))
		return n, rc.RPush(ctx, prefix+"runs", fmt.Sprintf("child:%d", n)).Err()
	}, worker.Params("n", "sleep"))
	w, err := worker.New(worker.Config{Registry: reg, Broker: b, Queues: []string{"q"},
		Concurrency: 2, AcksLate: true, Hostname: "child@test", Logger: log, DisableFollowups: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_ = w.Run(ctx) // until killed
	return 0
}

// env is one test's Redis broker (a private key prefix), result backend,
// producer and task registry. Tasks "tasks.record" on both sides append
// "<side>:<n>" to the list runs, so a test can count how often each task
// ran and where.
type env struct {
	t      *testing.T
	prefix string
	queue  string
	vt     string // visibility_timeout transport option
	broker *redistransport.Broker
	rb     *redisbackend.Backend
	prod   *producer.Producer
	log    *zap.Logger
	runs   string
	ids    sync.Map
}

func newEnv(t *testing.T, visibility string) *env {
	t.Helper()
	e := &env{t: t, prefix: "gwt-" + testenv.Suffix() + ":", queue: "q", vt: visibility, log: zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))}
	e.runs = e.prefix + "runs"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := redistransport.Dial(ctx, redistransport.Config{
		URL: testenv.RedisURL(), Logger: e.log, RestoreInterval: 500 * time.Millisecond,
		TransportOptions: map[string]string{"global_keyprefix": e.prefix, "visibility_timeout": visibility},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.broker = b
	rb, err := redisbackend.Open(testenv.RedisURL(), redisbackend.Options{Expires: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	e.rb = rb
	e.prod = producer.New(b, producer.Options{Backend: rb, DefaultQueue: e.queue, Logger: e.log})
	rc := testenv.Redis(t)
	t.Cleanup(func() {
		bg := context.Background()
		keys, _ := rc.Keys(bg, e.prefix+"*").Result()
		e.ids.Range(func(k, _ any) bool {
			keys = append(keys, rb.TaskKey(k.(string)), rb.GroupKey(k.(string)))
			return true
		})
		if len(keys) > 0 {
			rc.Del(bg, keys...)
		}
		_ = b.Close()
		_ = rb.Close()
	})
	return e
}

// worker starts a gworker on the queue; stop ends it warmly.
func (e *env) worker(concurrency int) (stop func()) {
	e.t.Helper()
	reg := worker.NewRegistry()
	if err := demo.Register(reg); err != nil {
		e.t.Fatal(err)
	}
	rc := e.rb.Client()
	reg.MustRegister("tasks.record", func(ctx context.Context, n int64, sleep float64) (int64, error) {
		time.Sleep(time.Duration(sleep * float64(time.Second)))
		return n, rc.RPush(ctx, e.runs, fmt.Sprintf("go:%d", n)).Err()
	}, worker.Params("n", "sleep"))
	w, err := worker.New(worker.Config{
		Registry: reg, Broker: e.broker, Backend: e.rb,
		Followups: followup.NewFollowups(e.prod, e.rb, e.log),
		Queues:    []string{e.queue}, Concurrency: concurrency, Hostname: "gworker@test",
		Accept: []string{"application/json", "application/x-msgpack"}, Logger: e.log,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("worker: %v", err)
				}
			case <-time.After(60 * time.Second):
				e.t.Error("worker did not stop")
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

const pyApp = `
import os, sys, time, json
from celery import Celery, group
import redis
app = Celery('tasks', broker=os.environ['BROKER'], backend=os.environ['BROKER'])
app.conf.broker_transport_options = {'global_keyprefix': os.environ['PREFIX'],
                                     'visibility_timeout': float(os.environ['VT'])}
app.conf.task_default_queue = os.environ['QUEUE']
app.conf.accept_content = ['json', 'msgpack']
app.conf.result_accept_content = ['json', 'msgpack']
app.conf.result_expires = 600
app.conf.worker_hijack_root_logger = False
app.conf.task_acks_late = True  # a task running when the worker is killed is not lost
r = redis.Redis.from_url(os.environ['BROKER'])

@app.task(name='tasks.record')
def record(n, sleep):
    time.sleep(sleep)
    r.rpush(os.environ['PREFIX'] + 'runs', 'py:%d' % n)
    return n

@app.task(name='tasks.add')
def add(x, y):
    return x + y
`

// python writes the Celery app module into a temporary directory and
// returns a command running args with it importable.
func (e *env) python(args ...string) *exec.Cmd {
	e.t.Helper()
	dir := e.t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pyapp.py"), []byte(pyApp), 0o644); err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(testenv.Python(), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PYTHONPATH="+dir, "BROKER="+testenv.RedisURL(), "PREFIX="+e.prefix, "QUEUE="+e.queue, "VT="+e.vt)
	return cmd
}

// pyWorker starts a Celery 5.2.6 prefork worker on the queue.
func (e *env) pyWorker(concurrency int) *exec.Cmd {
	e.t.Helper()
	cmd := e.python("-m", "celery", "-A", "pyapp", "worker", "-Q", e.queue, "-c", fmt.Sprint(concurrency),
		"-n", "py-"+e.prefix+"@test", "--without-mingle", "--without-gossip", "--without-heartbeat", "-l", "WARNING")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	// Ready when it has run a task: Celery takes seconds to start.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	r, err := e.prod.SendTask(ctx, "tasks.add", []any{int64(1), int64(2)}, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.ids.Store(r.ID(), true)
	if _, err := r.Get(ctx); err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		e.t.Fatalf("python worker not ready: %v\n%s", err, out.String())
	}
	e.t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if e.t.Failed() {
			e.t.Logf("python worker output:\n%s", out.String())
		}
	})
	return cmd
}

// runs returns how often each task number ran, and where.
func (e *env) counts() (map[int]int, map[string]int) {
	vals, err := e.rb.Client().LRange(context.Background(), e.runs, 0, -1).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	per, side := map[int]int{}, map[string]int{}
	for _, v := range vals {
		var s string
		var n int
		if _, err := fmt.Sscanf(strings.Replace(v, ":", " ", 1), "%s %d", &s, &n); err != nil {
			e.t.Fatalf("bad run record %q", v)
		}
		per[n]++
		side[s]++
	}
	return per, side
}

func (e *env) waitRuns(n int, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		per, _ := e.counts()
		if len(per) >= n {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("only %d of %d tasks ran within %v", len(per), n, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *env) send(n int, sleep float64, opts ...producer.Option) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range n {
		r, err := e.prod.SendTask(ctx, "tasks.record", []any{int64(i), sleep}, nil, opts...)
		if err != nil {
			e.t.Fatal(err)
		}
		e.ids.Store(r.ID(), true)
	}
}

func (e *env) exactlyOnce(n int) map[string]int {
	e.t.Helper()
	per, side := e.counts()
	for i := range n {
		if per[i] != 1 {
			e.t.Errorf("task %d ran %d times", i, per[i])
		}
	}
	if len(per) != n {
		e.t.Errorf("%d distinct tasks ran, want %d", len(per), n)
	}
	return side
}

// TestPythonClientGworker: Celery 5.2.6 sends over redis://, gworker runs,
// Python reads the results (json, msgpack, a group joined natively, a
// countdown, a priority, a chain, a chord and a retried task: the worker's
// follow-ups travel over Redis too).
func TestPythonClientGworker(t *testing.T) {
	e := newEnv(t, "3600")
	e.worker(4)
	cmd := e.python("-c", `
import json
from pyapp import app
from celery import group
r1 = app.send_task('tasks.add', (2, 2))
r2 = app.send_task('tasks.add', (3, 4), serializer='msgpack')
g = group(app.signature('tasks.add', (i, i)) for i in range(5)).apply_async()
r3 = app.send_task('tasks.add', (5, 5), countdown=2)
r4 = app.send_task('tasks.add', (1, 1), priority=9)
from celery import chain, chord
r5 = chain(app.signature('tasks.add', (1, 2)), app.signature('tasks.mul', (10,))).apply_async()
r6 = chord([app.signature('tasks.add', (i, i)) for i in range(4)], app.signature('tasks.xsum')).apply_async()
r7 = app.send_task('tasks.flaky', (2,))
out = {'json': r1.get(timeout=60), 'msgpack': r2.get(timeout=60), 'group': g.join_native(timeout=60),
       'countdown': r3.get(timeout=60), 'priority': r4.get(timeout=60),
       'chain': r5.get(timeout=60), 'chord': r6.get(timeout=60), 'retried': r7.get(timeout=60),
       'ids': [r.id for r in (r1, r2, r3, r4, r5, r5.parent, r6, r7)] + [c.id for c in g.results] + [g.id, r6.parent.id] + [c.id for c in r6.parent.results]}
print(json.dumps(out))
`)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var got struct {
		JSON, Msgpack, Countdown, Priority int
		Chain, Chord, Retried              int
		Group                              []int
		IDs                                []string
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, id := range got.IDs {
		e.ids.Store(id, true)
	}
	if got.JSON != 4 || got.Msgpack != 7 || got.Countdown != 10 || got.Priority != 2 ||
		got.Chain != 30 || got.Chord != 12 || got.Retried != 2 || !slices.Equal(got.Group, []int{0, 2, 4, 6, 8}) {
		t.Fatalf("results: %+v", got)
	}
}

// TestGoClientPythonWorker: gworker's producer publishes over Redis, a
// Celery 5.2.6 worker runs the tasks.
func TestGoClientPythonWorker(t *testing.T) {
	e := newEnv(t, "3600")
	e.pyWorker(2)
	e.send(10, 0)
	e.waitRuns(10, 90*time.Second)
	if side := e.exactlyOnce(10); side["py"] != 10 {
		t.Fatalf("runs by side: %v", side)
	}
}

// TestSplitQueueWithPython: a Python worker and gworker consume one Redis
// queue; every task runs exactly once.
func TestSplitQueueWithPython(t *testing.T) {
	e := newEnv(t, "3600")
	e.pyWorker(2)
	e.worker(2)
	const n = 60
	e.send(n, 0.05)
	e.waitRuns(n, 120*time.Second)
	time.Sleep(time.Second) // a duplicate would show up now
	side := e.exactlyOnce(n)
	t.Logf("runs by side: %v", side)
	if side["py"] == 0 || side["go"] == 0 {
		t.Fatalf("the queue was not shared: %v", side)
	}
}

// TestKilledPythonWorkerLosesNothing: a Celery worker SIGKILLed with
// prefetched and running tasks; after the visibility timeout gworker
// restores them and every task runs.
func TestKilledPythonWorkerLosesNothing(t *testing.T) {
	e := newEnv(t, "3")
	py := e.pyWorker(1)
	const n = 12
	e.send(n, 0.3)
	e.waitRuns(2, 90*time.Second)
	// Killed in the middle of its next task: right after a task ends,
	// kombu pops the next message (BRPOP) before it records it as
	// unacked, and a kill in that gap loses it, Celery's own window and
	// not what this test is about. A run is recorded at its task's end,
	// so 150 ms later the worker is well inside the next 0.3 s task.
	time.Sleep(150 * time.Millisecond)
	_ = syscall.Kill(-py.Process.Pid, syscall.SIGKILL)
	ctx := context.Background()
	if u, _ := e.broker.Unacked(ctx); u == 0 {
		t.Fatal("the killed worker held no unacknowledged message; the test proves nothing")
	}
	e.worker(4)
	e.waitRuns(n, 120*time.Second)
	per, side := e.counts()
	for i := range n {
		if per[i] == 0 {
			t.Errorf("task %d lost", i)
		}
	}
	t.Logf("runs by side: %v (a task running when killed may run twice: at least once)", side)
}

// TestKilledGworkerLosesNothing: a gworker process (acks_late) SIGKILLed
// with prefetched and running tasks; another gworker restores them after
// the visibility timeout and every task runs.
func TestKilledGworkerLosesNothing(t *testing.T) {
	e := newEnv(t, "3")
	const n = 16
	e.send(n, 0.3)
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"=1", "PREFIX="+e.prefix, "VT="+e.vt)
	var out strings.Builder
	child.Stdout, child.Stderr = &out, &out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("child worker output:\n%s", out.String())
		}
	})
	e.waitRuns(2, 60*time.Second)
	_ = child.Process.Kill()
	_ = child.Wait()
	if u, _ := e.broker.Unacked(context.Background()); u == 0 {
		t.Fatalf("the killed worker held no unacknowledged message; the test proves nothing\n%s", out.String())
	}
	e.worker(4)
	e.waitRuns(n, 120*time.Second)
	per, side := e.counts()
	for i := range n {
		if per[i] == 0 {
			t.Errorf("task %d lost", i)
		}
	}
	t.Logf("runs by side: %v", side)
}

// TestWarmShutdownLosesNothing: gworker stopped with a full prefetch
// window; what it did not run goes back and a second gworker runs it, each
// task exactly once, and no unacked entry is left behind.
func TestWarmShutdownLosesNothing(t *testing.T) {
	e := newEnv(t, "3600")
	const n = 40
	e.send(n, 0.1)
	stop := e.worker(2)
	e.waitRuns(3, 60*time.Second)
	stop()
	ctx := context.Background()
	if u, _ := e.broker.Unacked(ctx); u != 0 {
		t.Fatalf("%d unacked entries after warm shutdown", u)
	}
	e.worker(4)
	e.waitRuns(n, 120*time.Second)
	time.Sleep(500 * time.Millisecond)
	e.exactlyOnce(n)
}

// TestCountdownBeyondVisibilityRunsOnce: Celery runs such a task once per
// visibility timeout (kombu#337); gworker keeps the score of the held
// message fresh, so its own restore pass (every 0.5 s here) never takes it.
func TestCountdownBeyondVisibilityRunsOnce(t *testing.T) {
	e := newEnv(t, "2")
	e.worker(2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := e.prod.SendTask(ctx, "tasks.record", []any{int64(0), 0.0}, nil, producer.Countdown(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	e.ids.Store(r.ID(), true)
	e.waitRuns(1, 60*time.Second)
	time.Sleep(6 * time.Second)
	per, side := e.counts()
	t.Logf("runs by side: %v", side)
	if per[0] != 1 {
		t.Fatalf("countdown task ran %d times", per[0])
	}
}

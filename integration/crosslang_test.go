package integration

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestMixedWorkflows runs workflows whose steps alternate between a gworker
// worker and a Python Celery worker, each on its own queue: each side
// publishes the next step for the other.
func TestMixedWorkflows(t *testing.T) {
	t.Parallel()
	goQ := uniqueQueue(t, "mixed-go")
	pyQ := uniqueQueue(t, "mixed-py")
	startWorker(t, workerOptions{Queues: []string{goQ}, Concurrency: 2})
	startPyWorker(t, "", map[string]any{"task_default_queue": pyQ}, pyQ)
	client := pyClient{Conf: map[string]any{"task_default_queue": goQ}}

	r := client.run(t, fmt.Sprintf(`
from celery import chain, chord, group
GO, PY = %s, %s
def G(name, *args):
    return app.signature(name, args, queue=GO)
def P(name, *args):
    return app.signature(name, args, queue=PY)

res = track(chain(G('tasks.add', 2, 2), P('tasks.pymul', 10), G('tasks.add', 2), P('tasks.pyadd', 1)).apply_async())
emit(chain=describe(lambda: res.get(timeout=TIMEOUT)))

res = track(chord([G('tasks.add', i, i) for i in range(4)])(P('tasks.pysum')))
emit(go_header_py_body=describe(lambda: res.get(timeout=TIMEOUT)))

res = track(chord([P('tasks.pymul', i, 3) for i in range(4)])(G('tasks.xsum')))
emit(py_header_go_body=describe(lambda: res.get(timeout=TIMEOUT)))

res = track(group(G('tasks.add', 1, 1), P('tasks.pyadd', 2, 2), G('tasks.mul', 3, 3)).apply_async())
emit(group=describe(lambda: res.get(timeout=TIMEOUT)))

cb = P('tasks.pyecho')
cb.freeze()
IDS.append(cb.id)
first = send('tasks.add', (20, 22), queue=GO, link=cb)
emit(link=describe(lambda: app.AsyncResult(cb.id).get(timeout=TIMEOUT)))
`, pyString(goQ), pyString(pyQ)))
	wantValue(t, "chain go add | py mul | go add | py add", r.outcome(t, "chain"), "43", "int")
	wantValue(t, "chord: Go header, Python body", r.outcome(t, "go_header_py_body"), "12", "int")
	wantValue(t, "chord: Python header, Go body", r.outcome(t, "py_header_go_body"), "18", "int")
	wantValue(t, "group across both workers", r.outcome(t, "group"), "[2, 4, 9]", "list")
	wantValue(t, "Go task linked to a Python callback", r.outcome(t, "link"), "42", "int")
}

// TestResultExtendedAndStarted checks the STARTED state and the extended
// result fields Python reads from a gworker worker.
func TestResultExtendedAndStarted(t *testing.T) {
	t.Parallel()
	q := uniqueQueue(t, "extended")
	w := startWorker(t, workerOptions{Queues: []string{q}, Concurrency: 1,
		Extra: []string{"--result-extended", "--track-started"}})
	r := pyClient{Conf: map[string]any{"task_default_queue": q, "result_extended": true}}.run(t, `
res = send('tasks.sleep', (1,))
states = set()
info = None
deadline = time.time() + TIMEOUT
while time.time() < deadline:
    st = app.AsyncResult(res.id).state
    states.add(st)
    if st == 'STARTED' and info is None:
        info = app.AsyncResult(res.id).info
    if st == 'SUCCESS':
        break
    time.sleep(0.05)
emit(states=sorted(states), started_info=info)
done = send('tasks.add', (2,), {'y': 3})
done.get(timeout=TIMEOUT)
emit(name=done.name, args=list(done.args or []), kwargs=done.kwargs, worker=done.worker,
     queue=done.queue, retries=done.retries)
`)
	var states []string
	r.get(t, "states", &states)
	sawStarted := false
	for _, s := range states {
		sawStarted = sawStarted || s == "STARTED"
	}
	if !sawStarted {
		t.Errorf("a 1 s task was never seen STARTED with --track-started (states seen: %v)", states)
	}
	var info map[string]any
	r.get(t, "started_info", &info)
	if info["hostname"] == nil || info["pid"] == nil {
		t.Errorf("STARTED info %v, want pid and hostname", info)
	}
	var name, worker, queue string
	var args []int
	var kwargs map[string]int
	r.get(t, "name", &name)
	r.get(t, "args", &args)
	r.get(t, "kwargs", &kwargs)
	r.get(t, "worker", &worker)
	r.get(t, "queue", &queue)
	if name != "tasks.add" || len(args) != 1 || args[0] != 2 || kwargs["y"] != 3 || queue != q || worker == "" {
		t.Errorf("extended result: name %q args %v kwargs %v worker %q queue %q; want tasks.add [2] {y: 3}, a worker name and %s",
			name, args, kwargs, worker, queue, q)
	}
	w.requireAlive()
}

// TestResultExpires checks the time to live of stored results: a day by
// default, as in Celery, or --result-expires.
func TestResultExpires(t *testing.T) {
	t.Parallel()
	q := uniqueQueue(t, "expires-default")
	qShort := uniqueQueue(t, "expires-short")
	startWorker(t, workerOptions{Queues: []string{q}, Concurrency: 1})
	startWorker(t, workerOptions{Queues: []string{qShort}, Concurrency: 1, Extra: []string{"--result-expires", "90s"}})
	r := pyClient{}.run(t, fmt.Sprintf(`
a = send('tasks.add', (1, 1), queue=%s)
b = send('tasks.add', (1, 1), queue=%s)
a.get(timeout=TIMEOUT)
b.get(timeout=TIMEOUT)
emit(default=a.id, short=b.id)
`, pyString(q), pyString(qShort)))
	for _, c := range []struct {
		key      string
		min, max time.Duration
	}{
		{"default", 23 * time.Hour, 24 * time.Hour},
		{"short", 1 * time.Second, 90 * time.Second},
	} {
		var id string
		r.get(t, c.key, &id)
		ttl, err := env.rdb.TTL(context.Background(), "celery-task-meta-"+id).Result()
		if err != nil {
			t.Fatalf("redis TTL: %v", err)
		}
		if ttl < c.min || ttl > c.max {
			t.Errorf("%s: result TTL %v, want between %v and %v", c.key, ttl, c.min, c.max)
		}
	}
}

// TestMixedPool runs a gworker worker and a Python worker on the same
// queue: tasks, groups, chains and chords land on either, and every result
// is right whichever worker ran each step.
func TestMixedPool(t *testing.T) {
	t.Parallel()
	q := uniqueQueue(t, "pool")
	gw := startWorker(t, workerOptions{Queues: []string{q}, Concurrency: 2})
	// The Python worker has its own tasks.add, tasks.mul and tasks.xsum.
	pw := startPyWorker(t, "", map[string]any{"task_default_queue": q}, q)
	r := pyClient{Conf: map[string]any{"task_default_queue": q}}.run(t, `
from celery import chain, chord, group
S = lambda name, *args: app.signature(name, args)
res = track(group(S('tasks.mul', i, 2) for i in range(20)).apply_async())
emit(group=describe(lambda: res.get(timeout=TIMEOUT)))
res = track(chain(S('tasks.add', 1, 1), S('tasks.mul', 3), S('tasks.add', 1)).apply_async())
emit(chain=describe(lambda: res.get(timeout=TIMEOUT)))
res = track(chord([S('tasks.mul', i, i) for i in range(6)])(S('tasks.xsum')))
emit(chord=describe(lambda: res.get(timeout=TIMEOUT)))
`)
	wantValue(t, "group over both workers", r.outcome(t, "group"),
		"[0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38]", "list")
	wantValue(t, "chain", r.outcome(t, "chain"), "7", "int")
	wantValue(t, "chord", r.outcome(t, "chord"), "55", "int")
	t.Logf("gworker ran %d tasks, the Python worker %d", gw.countLog("] succeeded"), pw.countLog("] succeeded"))
}

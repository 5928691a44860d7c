package integration

import "testing"

// TestRateLimit runs a worker with tasks.add limited to 5/s and a Python
// producer sending 5 adds and one mul at once: the adds start at least
// 200 ms apart (the last one at least 800 ms after they were sent), and the
// mul, another task type, is not held behind them.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	q := uniqueQueue(t, "ratelimit")
	startWorker(t, workerOptions{Queues: []string{q}, Concurrency: 4, Extra: []string{"--rate-limit", "tasks.add=5/s"}})
	r := pyClient{Conf: map[string]any{"task_default_queue": q}}.run(t, `
from datetime import datetime, timezone
t0 = time.time()
adds = [send('tasks.add', (i, i)) for i in range(5)]
mul = send('tasks.mul', (6, 7))
emit(mul=describe(lambda: mul.get(timeout=TIMEOUT)), adds=[describe(lambda: a.get(timeout=TIMEOUT)) for a in adds])
def done(r):
    return r.date_done.replace(tzinfo=timezone.utc).timestamp() if r.date_done.tzinfo is None else r.date_done.timestamp()
emit(last_add_after=max(done(a) for a in adds) - t0, mul_before_last_add=done(mul) < max(done(a) for a in adds))
`)
	wantValue(t, "mul", r.outcome(t, "mul"), "42", "int")
	var after float64
	r.get(t, "last_add_after", &after)
	if after < 0.8 {
		t.Errorf("5 adds at 5/s: the last finished %.3fs after sending; want at least 0.8s", after)
	}
	var mulFirst bool
	r.get(t, "mul_before_last_add", &mulFirst)
	if !mulFirst {
		t.Error("the mul waited behind the rate-limited adds")
	}
}

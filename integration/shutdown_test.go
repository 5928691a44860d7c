package integration

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWarmShutdown stops a busy worker with SIGTERM: the running tasks must
// finish and be stored as SUCCESS, every other message must go back to the
// queue, and a second worker must finish them, each exactly once.
func TestWarmShutdown(t *testing.T) {
	for _, acksLate := range []bool{false, true} {
		name := "EarlyAck"
		if acksLate {
			name = "AcksLate"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testWarmShutdown(t, acksLate)
		})
	}
}

func testWarmShutdown(t *testing.T, acksLate bool) {
	const (
		nSlow = 6
		nFast = 10
	)
	q := uniqueQueue(t, "shutdown")
	var extra []string
	if acksLate {
		extra = append(extra, "--acks-late")
	}
	opts := workerOptions{Queues: []string{q}, Concurrency: 2, Prefetch: 4, Extra: extra}
	w1 := startWorker(t, opts)

	client := pyClient{Conf: map[string]any{"task_default_queue": q}}
	r := client.run(t, fmt.Sprintf(`
slow = [send('tasks.sleep', (1.0,)).id for _ in range(%d)]
fast = [send('tasks.add', (i, i)).id for i in range(%d)]
emit(slow=slow, fast=fast)
`, nSlow, nFast))
	var slow, fast []string
	r.get(t, "slow", &slow)
	r.get(t, "fast", &fast)
	all := append(append([]string{}, slow...), fast...)

	// Prefetch is 2 × 4 = 8: wait until the worker holds 8 messages, two of
	// them running, then ask it to stop.
	if !eventually(defaultWait, func() bool { return w1.countLog("] received") >= 8 }) {
		t.Fatalf("worker received %d messages, want 8 (prefetch 2×4); log:\n%s", w1.countLog("] received"), w1.log())
	}
	w1.signal(syscall.SIGTERM)
	if err := w1.wait(defaultWait); err != nil {
		t.Errorf("worker exit after SIGTERM: %v", err)
	}
	log1 := w1.log()

	// The tasks that ran finished and stored SUCCESS; nothing else ran.
	done1 := map[string]bool{}
	for _, id := range all {
		if strings.Contains(log1, "["+id+"] succeeded") {
			done1[id] = true
		}
	}
	if len(done1) < 2 {
		t.Errorf("%d tasks finished during the warm shutdown, want at least the 2 that were running", len(done1))
	}
	for _, id := range all {
		m := getMeta(t, id)
		switch {
		case done1[id] && (m == nil || m.Status != "SUCCESS"):
			t.Errorf("task %s logged as succeeded but stored %v", id, m)
		case !done1[id] && m != nil:
			t.Errorf("task %s did not run but stored %s", id, m.Status)
		}
	}
	if ready, unacked := queueCounts(t, q); ready != len(all)-len(done1) || unacked != 0 {
		t.Errorf("after the warm shutdown: %d ready, %d unacked; want %d ready, 0 unacked",
			ready, unacked, len(all)-len(done1))
	}

	// A second worker finishes the rest.
	w2 := startWorker(t, opts)
	for _, id := range all {
		waitMeta(t, id, defaultWait, "SUCCESS")
	}
	if err := w2.stop(defaultWait); err != nil {
		t.Errorf("second worker exit: %v", err)
	}
	log2 := w2.log()
	for i, id := range all {
		n := strings.Count(log1, "["+id+"] succeeded") + strings.Count(log2, "["+id+"] succeeded")
		if n != 1 {
			t.Errorf("task %s ran %d times, want exactly once", id, n)
		}
		m := getMeta(t, id)
		want := "1.0"
		if i >= nSlow {
			want = fmt.Sprint(2 * (i - nSlow))
		}
		if m == nil || string(m.Result) != want {
			t.Errorf("task %s result %v, want %s", id, m, want)
		}
	}
	if ready, unacked := queueCounts(t, q); ready != 0 || unacked != 0 {
		t.Errorf("queue after the second worker: %d ready, %d unacked; want empty", ready, unacked)
	}
}

// TestColdShutdown sends two signals: the second one abandons running
// tasks. With acks_late their messages were never acknowledged, so a new
// worker runs them.
func TestColdShutdown(t *testing.T) {
	t.Parallel()
	q := uniqueQueue(t, "cold")
	opts := workerOptions{Queues: []string{q}, Concurrency: 2, Extra: []string{"--acks-late"}}
	w1 := startWorker(t, opts)
	r := pyClient{Conf: map[string]any{"task_default_queue": q}}.run(t, `
emit(ids=[send('tasks.sleep', (3,)).id for _ in range(2)])
`)
	var ids []string
	r.get(t, "ids", &ids)
	if !eventually(defaultWait, func() bool { return w1.countLog("tasks.sleep[", "] received") >= 2 }) {
		t.Fatalf("worker did not receive the tasks; log:\n%s", w1.log())
	}
	w1.signal(syscall.SIGTERM)
	w1.waitLog("Warm shutdown", 5*time.Second)
	w1.signal(syscall.SIGTERM)
	// Exit code is not specified; it must exit well before the tasks end.
	_ = w1.wait(defaultWait)
	for _, id := range ids {
		if m := getMeta(t, id); m != nil && m.Status == "SUCCESS" {
			t.Errorf("task %s finished although the shutdown was cold", id)
		}
	}
	w2 := startWorker(t, opts)
	for _, id := range ids {
		m := waitMeta(t, id, defaultWait, "SUCCESS")
		if string(m.Result) != "3" {
			t.Errorf("task %s result %s, want 3", id, m.Result)
		}
	}
	_ = w2.stop(defaultWait)
}

// Shutdown as operators send it, as Celery 5.5: SIGQUIT is a cold
// shutdown, never Go's goroutine dump, and so is SIGTERM with
// REMAP_SIGTERM=SIGQUIT (Kubernetes sends one SIGTERM, then SIGKILL). The
// running acks_late task gets --soft-shutdown-timeout, then goes back to
// the broker and runs on the next worker.
func TestColdShutdownSignals(t *testing.T) {
	for name, c := range map[string]struct {
		sig syscall.Signal
		env []string
	}{
		"SIGQUIT":                    {syscall.SIGQUIT, nil},
		"SIGTERM with REMAP_SIGTERM": {syscall.SIGTERM, []string{"REMAP_SIGTERM=SIGQUIT"}},
	} {
		t.Run(name, func(t *testing.T) {
			q := uniqueQueue(t, "quit")
			opts := workerOptions{Queues: []string{q}, Concurrency: 1, Env: c.env,
				Extra: []string{"--acks-late", "--soft-shutdown-timeout", "1"}}
			w1 := startWorker(t, opts)
			r := pyClient{Conf: map[string]any{"task_default_queue": q}}.run(t, `
emit(id=send('tasks.sleep', (30,)).id)
`)
			var id string
			r.get(t, "id", &id)
			if !eventually(defaultWait, func() bool { return w1.countLog("tasks.sleep[", "] received") >= 1 }) {
				t.Fatalf("worker did not receive the task; log:\n%s", w1.log())
			}
			w1.signal(c.sig)
			if err := w1.wait(defaultWait); err != nil && !strings.Contains(err.Error(), "exit status") {
				t.Fatalf("worker did not exit: %v", err)
			}
			if out := w1.output(); strings.Contains(out, "goroutine ") && strings.Contains(out, "[running]") {
				t.Fatalf("a goroutine dump instead of a cold shutdown:\n%s", out)
			}
			if !strings.Contains(w1.log(), "cold shutdown") {
				t.Errorf("no cold shutdown logged:\n%s", w1.log())
			}
			if m := getMeta(t, id); m != nil && m.Status == "SUCCESS" {
				t.Fatalf("task %s finished although the shutdown was cold", id)
			}
			w2 := startWorker(t, workerOptions{Queues: []string{q}, Concurrency: 1})
			if !eventually(defaultWait, func() bool { return w2.countLog("tasks.sleep[", "] received") >= 1 }) {
				t.Errorf("the task did not go back to the broker; log:\n%s", w2.log())
			}
			w2.kill()
		})
	}
}

// An idle worker on Redis holding an ETA task gets SIGQUIT with
// --soft-shutdown-timeout: as Celery 5.5, the soft shutdown is skipped
// (no task runs) unless --enable-soft-shutdown-on-idle
// (worker_enable_soft_shutdown_on_idle). Either way the held message is
// back in its Redis list when the worker has exited, not left in the
// unacked hash until the visibility timeout, which is what Celery needs
// the setting for.
func TestSoftShutdownOnIdleRequeuesETATasks(t *testing.T) {
	for _, onIdle := range []bool{false, true} {
		t.Run(map[bool]string{false: "skipped", true: "on idle"}[onIdle], func(t *testing.T) {
			q := uniqueQueue(t, "idle-eta")
			prefix := "gwt-" + q + ":"
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if keys, _ := env.rdb.Keys(ctx, prefix+"*").Result(); len(keys) > 0 {
					env.rdb.Del(ctx, keys...)
				}
			})
			extra := []string{"--broker-transport-option", "global_keyprefix=" + prefix, "--soft-shutdown-timeout", "3"}
			if onIdle {
				extra = append(extra, "--enable-soft-shutdown-on-idle")
			}
			w := startWorker(t, workerOptions{Queues: []string{q}, Concurrency: 1, Broker: backendURL, Extra: extra})
			pyClient{Broker: backendURL, Conf: map[string]any{"task_default_queue": q,
				"broker_transport_options": map[string]any{"global_keyprefix": prefix}}}.run(t, `
emit(id=send('tasks.add', (1, 2), countdown=600).id)
`)
			if !eventually(defaultWait, func() bool { return w.countLog("tasks.add[", "] received") >= 1 }) {
				t.Fatalf("worker did not receive the task; log:\n%s", w.log())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if n, err := env.rdb.LLen(ctx, prefix+q).Result(); err != nil || n != 0 {
				t.Fatalf("%s holds %d messages (%v) while the worker holds the ETA task", q, n, err)
			}
			w.signal(syscall.SIGQUIT)
			if err := w.wait(defaultWait); err != nil && !strings.Contains(err.Error(), "exit status") {
				t.Fatalf("worker did not exit: %v", err)
			}
			log := w.log()
			if skipped := strings.Contains(log, "Soft shutdown skipped"); skipped == onIdle {
				t.Errorf("soft shutdown skipped: %v, want %v; log:\n%s", skipped, !onIdle, log)
			}
			if n, err := env.rdb.LLen(ctx, prefix+q).Result(); err != nil || n != 1 {
				t.Errorf("after the worker exited %s holds %d messages (%v), want the ETA task back", q, n, err)
			}
			if n, err := env.rdb.HLen(ctx, prefix+"unacked").Result(); err != nil || n != 0 {
				t.Errorf("%d messages left in the unacked hash (%v)", n, err)
			}
		})
	}
}

package worker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gworker/gworker/gworkertest"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

func wantException(t *testing.T, err error, typ string) *protocol.Exception {
	t.Helper()
	var exc *protocol.Exception
	if !errors.As(err, &exc) {
		t.Fatalf("want %s, got %v", typ, err)
	}
	if exc.Type != typ {
		t.Fatalf("want %s, got %s(%v)", typ, exc.Type, exc.Args)
	}
	return exc
}

func TestTasksRunAndResultsAreStored(t *testing.T) {
	e := newEnv(t)
	e.start()
	add := e.send("tasks.add", []any{int64(2), int64(2)}, nil)
	kw := e.send("tasks.add", []any{int64(2)}, map[string]any{"y": int64(3)})
	fl := e.send("tasks.add", []any{2.0, int64(2)}, nil)
	fail := e.send("tasks.raise_error", nil, map[string]any{"message": "gone"})
	arity := e.send("tasks.add", []any{int64(1)}, nil)
	unknown := e.send("tasks.does_not_exist", nil, nil)

	if v, err := e.get(add); err != nil || v != int64(4) {
		t.Errorf("add: %v %v", v, err)
	}
	if v, err := e.get(kw); err != nil || v != int64(5) {
		t.Errorf("add with kwargs: %v %v", v, err)
	}
	if v, err := e.get(fl); err != nil || v != 4.0 {
		t.Errorf("float add: %#v %v", v, err)
	}
	_, err := e.get(fail)
	if exc := wantException(t, err, "KeyError"); exc.Args[0] != "gone" || exc.Module != "builtins" {
		t.Errorf("raise_error: %+v", exc)
	}
	_, err = e.get(arity)
	wantException(t, err, "TypeError")
	_, err = e.get(unknown)
	if exc := wantException(t, err, "NotRegistered"); exc.Module != "celery.exceptions" {
		t.Errorf("NotRegistered module: %q", exc.Module)
	}
	if m := e.meta(fail.ID()); !strings.Contains(m.Traceback, "KeyError") {
		t.Errorf("traceback: %q", m.Traceback)
	}
	// The worker is still consuming after the bad ones.
	if v, err := e.get(e.send("tasks.mul", []any{int64(6), int64(7)}, nil)); err != nil || v != int64(42) {
		t.Errorf("mul after failures: %v %v", v, err)
	}
	st := e.worker.Stats()
	if st.Rejected != 1 || st.Failed != 2 || st.Succeeded < 4 {
		t.Errorf("stats: %+v", st)
	}
}

func TestMalformedMessagesAreRejectedAndTheWorkerGoesOn(t *testing.T) {
	e := newEnv(t)
	e.start()
	ctx := context.Background()
	id := producer.NewID()
	bad := []*protocol.RawMessage{
		// Undecodable JSON, with a readable id: FAILURE stored.
		{Headers: map[string]any{"task": "tasks.add", "id": id}, ContentType: "application/json", ContentEncoding: "utf-8", Body: []byte("{not json")},
		// Pickle is never accepted.
		{Headers: map[string]any{"task": "tasks.add", "id": producer.NewID()}, ContentType: protocol.ContentTypePickle, ContentEncoding: "binary", Body: []byte("\x80\x04N.")},
		// A body of the wrong shape, no id header.
		{Headers: map[string]any{"task": "tasks.add"}, ContentType: "application/json", ContentEncoding: "utf-8", Body: []byte(`[1, 2]`)},
		// A foreign message.
		{Headers: map[string]any{}, ContentType: "application/json", ContentEncoding: "utf-8", Body: []byte(`{"hello": 1}`)},
		// An empty body.
		{Headers: map[string]any{"task": "tasks.add", "id": producer.NewID()}, ContentType: "application/json", ContentEncoding: "utf-8"},
	}
	for _, m := range bad {
		if err := e.broker.Publish(ctx, "", e.queue, m); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := e.get(e.send("tasks.add", []any{int64(1), int64(1)}, nil)); err != nil || v != int64(2) {
		t.Fatalf("valid task after bad ones: %v %v", v, err)
	}
	waitFor(t, "5 invalid messages", 5*time.Second, func() bool { return e.worker.Stats().Invalid == 5 })
	_, err := e.get(result.NewAsyncResult(id, e.backend))
	wantException(t, err, "InvalidTaskError")
	st, err := e.broker.Stats(e.queue)
	if err != nil || st.Ready != 0 || st.Unacked != 0 {
		t.Errorf("queue after rejects: %+v %v", st, err)
	}
	// Rejected without requeue: dead-lettered, each once, as published.
	dead := e.broker.DeadLetters()
	if len(dead) != len(bad) {
		t.Fatalf("%d dead letters, want %d", len(dead), len(bad))
	}
	for i, d := range dead {
		if d.Reason != gworkertest.ReasonRejected || string(d.Raw.Body) != string(bad[i].Body) || d.Raw.ContentType != bad[i].ContentType {
			t.Errorf("dead letter %d: %s %q %q, want the rejected message %q", i, d.Reason, d.Raw.ContentType, d.Raw.Body, bad[i].Body)
		}
	}
	if !e.logged("Received invalid task message") {
		t.Error("no log line for the invalid messages")
	}
}

func TestWarmShutdownFinishesRunningAndRequeuesTheRest(t *testing.T) {
	e := newEnv(t, func(c *worker.Config, _ *worker.Registry) {
		c.Concurrency = 1
		c.TrackStarted = true
	})
	first := e.send("tasks.sleep", []any{0.5}, nil)
	var rest []*result.AsyncResult
	for i := 0; i < 5; i++ {
		rest = append(rest, e.send("tasks.sleep", []any{0.5}, nil))
	}
	e.start()
	waitFor(t, "the first task to start", 10*time.Second, func() bool { return e.meta(first.ID()).Status == result.Started })
	e.stop()
	if m := e.meta(first.ID()); m.Status != result.Success {
		t.Fatalf("the running task did not finish: %s", m.Status)
	}
	for _, r := range rest {
		if m := e.meta(r.ID()); m.Status != result.Pending {
			t.Errorf("task %s ran during shutdown: %s", r.ID(), m.Status)
		}
	}
	st, err := e.broker.Stats(e.queue)
	if err != nil || st.Ready != len(rest) || st.Unacked != 0 {
		t.Fatalf("want %d messages back in the queue, got %+v %v", len(rest), st, err)
	}
}

// A cold shutdown abandons the running tasks. Under acks_late what a
// cancelled task returns is neither stored nor acknowledged: its message
// goes back to the queue for another worker (CI once saw FAILURE('context
// canceled') stored and the message acked, the task lost). Acknowledged
// early, it has no copy left, and the client is told WorkerLostError.
func TestColdShutdownAbandonsRunningTasks(t *testing.T) {
	for _, late := range []bool{true, false} {
		t.Run(fmt.Sprintf("acks_late=%v", late), func(t *testing.T) {
			started := make(chan struct{})
			events := &sink{ch: make(chan *worker.TaskEvent, 100)}
			var e *env
			e = newEnv(t, func(c *worker.Config, reg *worker.Registry) {
				c.AcksLate = late
				c.Events = events
				err := reg.Handle("t.wait", func(ctx context.Context, _ []any, _ map[string]any) (any, error) {
					close(started)
					<-ctx.Done()
					// Return only once the worker has closed its consumer
					// (or at once if the message was acked early).
					deadline := time.Now().Add(10 * time.Second)
					for time.Now().Before(deadline) {
						if st, err := e.broker.Stats(e.queue); err == nil && st.Unacked == 0 {
							break
						}
						time.Sleep(5 * time.Millisecond)
					}
					return nil, ctx.Err()
				})
				if err != nil {
					t.Fatal(err)
				}
			})
			e.start()
			r := e.send("t.wait", nil, nil)
			waitOn(t, started, "the task to start")
			e.stopOnce.Do(func() {
				cold, cancel := context.WithCancel(context.Background())
				cancel()
				if err := e.g.Stop(cold); !errors.Is(err, context.Canceled) {
					t.Errorf("cold stop: %v", err)
				}
			})
			var last *worker.TaskEvent
			for last == nil {
				ev := waitOn(t, events.ch, "the task's end")
				switch {
				case ev.Message.ID != r.ID():
				case ev.Type == worker.EventTaskFailed, ev.Type == worker.EventTaskSucceeded, ev.Type == worker.EventTaskRejected:
					last = ev
				}
			}
			m := e.meta(r.ID())
			st, err := e.broker.Stats(e.queue)
			if err != nil {
				t.Fatal(err)
			}
			if late {
				if last.Type != worker.EventTaskRejected || !last.Requeue {
					t.Fatalf("event %s (requeue %v), want task-rejected with requeue", last.Type, last.Requeue)
				}
				if m.Status != result.Pending {
					t.Fatalf("stored %s (%v) for a task the cold shutdown gave back", m.Status, m.Result)
				}
				if st.Ready != 1 || st.Unacked != 0 {
					t.Fatalf("want the message back in the queue, got %+v", st)
				}
				return
			}
			if last.Type != worker.EventTaskFailed || last.Exception == nil || last.Exception.Type != "WorkerLostError" {
				t.Fatalf("event %s %v, want task-failed with WorkerLostError", last.Type, last.Exception)
			}
			if m.Status != result.Failure {
				t.Fatalf("stored %s, want FAILURE", m.Status)
			}
			if st.Ready != 0 || st.Unacked != 0 {
				t.Fatalf("an early-acked message is gone, got %+v", st)
			}
		})
	}
}

// Messages handed back unstarted (prefetched when a warm shutdown came)
// are redelivered without a run that failed: however often that happens,
// they are no poison. The broker's own count (x-delivery-count, as the
// in-memory broker keeps it) counts every hand-back; the backend's counts
// only redelivered starts.
func TestHandedBackMessagesAreNotPoison(t *testing.T) {
	e := newEnv(t, func(c *worker.Config, _ *worker.Registry) {
		c.AcksLate = true
		c.MaxRedeliveries = 2
	})
	r := e.send("tasks.add", []any{int64(1), int64(2)}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 5; i++ {
		c, err := e.broker.Consume(ctx, []string{e.queue}, 1)
		if err != nil {
			t.Fatal(err)
		}
		d := waitOn(t, c.Deliveries(), "the message")
		if err := d.Reject(true); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	e.start()
	if v, err := e.get(r); err != nil || v != int64(3) {
		t.Fatalf("got %v, %v; want 3", v, err)
	}
}

func TestTimeLimits(t *testing.T) {
	e := newEnv(t)
	e.start()
	soft := e.send("tasks.sleep", []any{int64(5)}, nil, producer.SoftTimeLimit(200*time.Millisecond))
	hard := e.send("tasks.sleep", []any{int64(5)}, nil, producer.TimeLimit(300*time.Millisecond))
	_, err := e.get(soft)
	if exc := wantException(t, err, "SoftTimeLimitExceeded"); exc.Module != "billiard.exceptions" {
		t.Errorf("module %q", exc.Module)
	}
	_, err = e.get(hard)
	wantException(t, err, "TimeLimitExceeded")
	if m := e.meta(hard.ID()); m.Traceback != "" {
		t.Errorf("hard limit traceback should be null, got %q", m.Traceback)
	}
}

func TestCountdownDoesNotBlockOtherTasks(t *testing.T) {
	e := newEnv(t, func(c *worker.Config, _ *worker.Registry) { c.Concurrency = 1 })
	e.start()
	later := e.send("tasks.add", []any{int64(1), int64(1)}, nil, producer.Countdown(time.Second))
	now := e.send("tasks.add", []any{int64(2), int64(2)}, nil)
	if v, err := e.get(now); err != nil || v != int64(4) {
		t.Fatalf("immediate task: %v %v", v, err)
	}
	if m := e.meta(later.ID()); m.Status != result.Pending {
		t.Fatalf("countdown task ran early: %s", m.Status)
	}
	if v, err := e.get(later); err != nil || v != int64(2) {
		t.Fatalf("countdown task: %v %v", v, err)
	}
}

func TestExpiredTaskIsRevoked(t *testing.T) {
	e := newEnv(t)
	e.start()
	r := e.send("tasks.add", []any{int64(1), int64(1)}, nil,
		producer.Countdown(600*time.Millisecond), producer.ExpiresIn(300*time.Millisecond))
	_, err := e.get(r)
	if exc := wantException(t, err, "TaskRevokedError"); exc.Args[0] != "expired" {
		t.Errorf("args: %v", exc.Args)
	}
	if m := e.meta(r.ID()); m.Status != result.Revoked {
		t.Errorf("state %s", m.Status)
	}
}

func TestRetries(t *testing.T) {
	e := newEnv(t, func(c *worker.Config, reg *worker.Registry) {
		reg.MustRegister("t.always_retry", func() error {
			return worker.Retry(worker.PyError("ValueError", "again"), worker.Countdown(10*time.Millisecond), worker.MaxRetries(2))
		})
		reg.MustRegister("t.retry_plain", func() error {
			return worker.Retry(nil, worker.Countdown(10*time.Millisecond), worker.MaxRetries(1))
		})
	})
	e.start()
	if v, err := e.get(e.send("tasks.flaky", []any{int64(3)}, nil)); err != nil || v != int64(3) {
		t.Fatalf("flaky(3): %v %v", v, err)
	}
	_, err := e.get(e.send("t.always_retry", nil, nil))
	wantException(t, err, "ValueError")
	_, err = e.get(e.send("t.retry_plain", nil, nil))
	wantException(t, err, "MaxRetriesExceededError")
}

func TestRateLimitSpacesStarts(t *testing.T) {
	var mu sync.Mutex
	var starts []time.Time
	e := newEnv(t, func(c *worker.Config, reg *worker.Registry) {
		if err := reg.Register("t.limited", func() int {
			mu.Lock()
			starts = append(starts, time.Now())
			mu.Unlock()
			return 1
		}, worker.WithOptions(worker.TaskOptions{RateLimit: "10/s"})); err != nil {
			t.Fatal(err)
		}
	})
	e.start()
	sent := time.Now()
	var rs []*result.AsyncResult
	for i := 0; i < 4; i++ {
		rs = append(rs, e.send("t.limited", nil, nil))
	}
	other := e.send("tasks.add", []any{int64(1), int64(2)}, nil)
	if _, err := e.get(other); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if _, err := e.get(r); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// At 10/s the fourth start is given a slot at least 300 ms after the
	// first, which cannot come before the tasks were sent.
	last := starts[0]
	for _, s := range starts {
		if s.After(last) {
			last = s
		}
	}
	if d := last.Sub(sent); len(starts) != 4 || d < 300*time.Millisecond {
		t.Errorf("%d starts, the last %v after sending; want 4, at least 300ms", len(starts), d)
	}
}

func TestPanicBecomesFailure(t *testing.T) {
	e := newEnv(t, func(c *worker.Config, reg *worker.Registry) {
		reg.MustRegister("t.panic", func() int { panic("kaboom") })
	})
	e.start()
	r := e.send("t.panic", nil, nil)
	_, err := e.get(r)
	wantException(t, err, "RuntimeError")
	if m := e.meta(r.ID()); !strings.Contains(m.Traceback, "kaboom") || !strings.Contains(m.Traceback, "goroutine") {
		t.Errorf("traceback lacks the panic stack: %q", m.Traceback)
	}
}

func TestDeadlockGuard(t *testing.T) {
	e := newEnv(t)
	e.start()
	target := e.send("tasks.add", []any{int64(20), int64(22)}, nil)
	if _, err := e.get(target); err != nil {
		t.Fatal(err)
	}
	_, err := e.get(e.send("tasks.sync_get", []any{target.ID()}, nil))
	exc := wantException(t, err, "RuntimeError")
	if !strings.HasPrefix(exc.Args[0].(string), "Never call result.get() within a task!") {
		t.Errorf("message %q", exc.Args[0])
	}
	v, err := e.get(e.send("tasks.sync_get", []any{target.ID()}, map[string]any{"disable_sync_subtasks": false}))
	if err != nil || v != int64(42) {
		t.Errorf("guard off: %v %v", v, err)
	}
}

func TestUnencodableResultFailsWithEncodeError(t *testing.T) {
	e := newEnv(t, func(c *worker.Config, reg *worker.Registry) {
		reg.MustRegister("t.chan", func() chan int { return make(chan int) })
	})
	e.start()
	_, err := e.get(e.send("t.chan", nil, nil))
	if exc := wantException(t, err, "EncodeError"); exc.Module != "kombu.exceptions" {
		t.Errorf("module %q", exc.Module)
	}
}

// A message due after the ETA horizon is held until the horizon, then
// published again and acknowledged, so no delivery stays unacknowledged
// long enough for RabbitMQ's consumer_timeout.
func TestFarETAIsRepublishedAtTheHorizon(t *testing.T) {
	e := newEnv(t, func(c *worker.Config, _ *worker.Registry) { c.ETAHorizon = 200 * time.Millisecond })
	e.start()
	r := e.send("tasks.add", []any{int64(3), int64(4)}, nil, producer.Countdown(900*time.Millisecond))
	if v, err := e.get(r); err != nil || v != int64(7) {
		t.Fatalf("far ETA task: %v %v", v, err)
	}
	if st := e.worker.Stats(); st.Received < 2 {
		t.Errorf("the message was not republished: %+v", st)
	}
}

// AutoRetry retries matching errors with backoff (Celery's autoretry_for
// and retry_backoff) and fails with the task's own error past max_retries;
// other errors fail at once.
func TestAutoRetry(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	count := func(key string) int {
		mu.Lock()
		defer mu.Unlock()
		calls[key]++
		return calls[key]
	}
	two := 2
	policy := &worker.AutoRetryPolicy{
		On:         func(err error) bool { return strings.Contains(err.Error(), "transient") },
		MaxRetries: &two, Backoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Jitter: true,
	}
	e := newEnv(t, func(c *worker.Config, reg *worker.Registry) {
		opts := worker.WithOptions(worker.TaskOptions{AutoRetry: policy})
		reg.MustRegister("t.recovers", func(key string) (int, error) {
			if n := count(key); n < 3 {
				return 0, errors.New("transient failure")
			}
			return 7, nil
		}, worker.Params("key"), opts)
		reg.MustRegister("t.never", func() error { return worker.PyError("ConnectionError", "transient outage") }, opts)
		reg.MustRegister("t.fatal", func(key string) error { count(key); return worker.PyError("ValueError", "fatal") }, worker.Params("key"), opts)
	})
	e.start()
	if v, err := e.get(e.send("t.recovers", []any{"a"}, nil)); err != nil || v != int64(7) {
		t.Errorf("recovers after two retries: %v %v", v, err)
	}
	_, err := e.get(e.send("t.never", nil, nil))
	wantException(t, err, "ConnectionError")
	_, err = e.get(e.send("t.fatal", []any{"f"}, nil))
	wantException(t, err, "ValueError")
	mu.Lock()
	defer mu.Unlock()
	if calls["a"] != 3 || calls["f"] != 1 {
		t.Errorf("calls: %v", calls)
	}
}

// A warm shutdown does not wait for rate-limited or ETA tasks: they go
// back to the queue at once.
func TestShutdownRequeuesWaitingTasks(t *testing.T) {
	e := newEnv(t, func(c *worker.Config, reg *worker.Registry) {
		if err := reg.Register("t.hourly", func() int { return 1 }, worker.WithOptions(worker.TaskOptions{RateLimit: "1/h"})); err != nil {
			t.Fatal(err)
		}
	})
	e.start()
	first := e.send("t.hourly", nil, nil)
	if _, err := e.get(first); err != nil {
		t.Fatal(err)
	}
	e.send("t.hourly", nil, nil)
	e.send("tasks.add", []any{int64(1), int64(1)}, nil, producer.Countdown(time.Hour))
	waitFor(t, "both messages to be received", 10*time.Second, func() bool { return e.worker.Stats().Received == 3 })
	start := time.Now()
	e.stop()
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	st, err := e.broker.Stats(e.queue)
	if err != nil || st.Ready != 2 || st.Unacked != 0 {
		t.Errorf("want the 2 waiting messages back in the queue: %+v %v", st, err)
	}
}

package gworkertest_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gworker/gworker/canvas"
	"github.com/gworker/gworker/gworkertest"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

func register(reg *worker.Registry) {
	reg.MustRegister("t.add", func(x, y int) int { return x + y }, worker.Params("x", "y"))
	reg.MustRegister("t.xsum", func(xs []float64) float64 {
		s := 0.0
		for _, x := range xs {
			s += x
		}
		return s
	}, worker.Params("xs"))
	reg.MustRegister("t.fmul", func(x, y float64) float64 { return x * y }, worker.Params("x", "y"))
	reg.MustRegister("t.fail", func() error { return worker.PyError("KeyError", "boom") })
}

func get(t *testing.T, r *result.AsyncResult) (any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return r.Get(ctx)
}

func TestEnvRunsTasksAndCanvas(t *testing.T) {
	ctx := context.Background()
	e := gworkertest.New(t)
	register(e.Registry)
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); !errors.Is(err, gworkertest.ErrStarted) {
		t.Errorf("second Start: %v", err)
	}
	r, err := e.SendTask(ctx, "t.add", []any{2}, map[string]any{"y": 3})
	if err != nil {
		t.Fatal(err)
	}
	m, err := e.Wait(ctx, r.ID())
	if err != nil || m.Status != result.Success || m.Result != int64(5) {
		t.Fatalf("add: %+v %v", m, err)
	}

	chain, err := canvas.Chain(canvas.Sig("t.add", 1, 2), canvas.Sig("t.add", 10)).ApplyAsync(ctx, e.Producer)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := get(t, chain); err != nil || v != int64(13) {
		t.Errorf("chain: %v %v", v, err)
	}
	g, err := canvas.Group(canvas.Sig("t.add", 1, 1), canvas.Sig("t.add", 2, 2)).ApplyAsync(ctx, e.Producer)
	if err != nil {
		t.Fatal(err)
	}
	jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if v, err := g.JoinNative(jctx); err != nil || len(v) != 2 || v[0] != int64(2) || v[1] != int64(4) {
		t.Errorf("group: %v %v", v, err)
	}
	chord, err := canvas.Chord([]*canvas.Signature{canvas.Sig("t.add", 1, 1), canvas.Sig("t.fmul", 0.5, 1.5)}, canvas.Sig("t.xsum")).ApplyAsync(ctx, e.Producer)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := get(t, chord); err != nil || v != 2.75 {
		t.Errorf("chord: %v %v", v, err)
	}
	bad, err := canvas.Chord([]*canvas.Signature{canvas.Sig("t.add", 1, 1), canvas.Sig("t.fail")}, canvas.Sig("t.xsum")).ApplyAsync(ctx, e.Producer)
	if err != nil {
		t.Fatal(err)
	}
	m, err = e.Wait(ctx, bad.ID())
	if err != nil || m.Status != result.Failure {
		t.Fatalf("failing chord: %+v %v", m, err)
	}
	if exc, _ := protocol.ExceptionFromValue(m.Result); exc == nil || exc.Type != "ChordError" || !strings.Contains(exc.Args[0].(string), "KeyError('boom')") {
		t.Errorf("failing chord body: %v", m.Result)
	}
	if st := e.Worker().Stats(); st.Succeeded < 8 || st.Failed != 1 {
		t.Errorf("stats: %+v", st)
	}
}

func TestEnvRetriesThroughTheBroker(t *testing.T) {
	ctx := context.Background()
	e := gworkertest.NewEnv(t, gworkertest.Config{Queue: "jobs", Worker: worker.Config{Concurrency: 1}})
	var calls atomic.Int32
	e.Registry.MustRegister("t.flaky", func() (int, error) {
		if calls.Add(1) < 3 {
			return 0, worker.Retry(worker.PyError("ConnectionError", "down"), worker.Countdown(10*time.Millisecond))
		}
		return 7, nil
	})
	// Sent before the worker starts: it waits in the queue.
	r, err := e.SendTask(ctx, "t.flaky", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := e.Broker.Stats("jobs"); st.Ready != 1 {
		t.Fatalf("queue before start: %+v", st)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := e.Wait(ctx, r.ID())
	if err != nil || m.Result != int64(7) || calls.Load() != 3 {
		t.Fatalf("flaky: %+v %v after %d calls", m, err, calls.Load())
	}
	if st := e.Worker().Stats(); st.Retried != 2 {
		t.Errorf("stats: %+v", st)
	}
	if err := e.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
}

func TestEnvWaitTimesOutWithTheState(t *testing.T) {
	ctx := context.Background()
	e := gworkertest.NewEnv(t, gworkertest.Config{WaitTimeout: 50 * time.Millisecond})
	r, err := e.SendTask(ctx, "t.nobody", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Not started: the task stays PENDING.
	_, err = e.Wait(ctx, r.ID())
	if !errors.Is(err, gworkertest.ErrWaitTimeout) || !strings.Contains(err.Error(), "PENDING") {
		t.Errorf("wait: %v", err)
	}
	if err := e.Stop(ctx); !errors.Is(err, gworkertest.ErrNotStarted) {
		t.Errorf("stop before start: %v", err)
	}
}

// A warm shutdown returns what did not run to the queue; a new Env is not
// needed to see it.
func TestEnvStopRequeues(t *testing.T) {
	ctx := context.Background()
	release := make(chan struct{})
	started := make(chan struct{}, 4)
	e := gworkertest.NewEnv(t, gworkertest.Config{Worker: worker.Config{Concurrency: 1}})
	e.Registry.MustRegister("t.block", func() int {
		started <- struct{}{}
		<-release
		return 1
	})
	var once sync.Once
	releaseOnce := func() { once.Do(func() { close(release) }) }
	t.Cleanup(releaseOnce) // before the Env's cleanup, which waits for the task
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	first, _ := e.SendTask(ctx, "t.block", nil, nil)
	for i := 0; i < 3; i++ {
		if _, err := e.SendTask(ctx, "t.block", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	<-started
	waitStats := func(want gworkertest.QueueStats) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for st, _ := e.Broker.Stats(e.Queue()); st != want; st, _ = e.Broker.Stats(e.Queue()) {
			if time.Now().After(deadline) {
				t.Fatalf("queue is %+v, want %+v", st, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// One running (acknowledged before it runs), three prefetched.
	waitStats(gworkertest.QueueStats{Unacked: 3})
	stopped := make(chan error, 1)
	go func() { stopped <- e.Stop(ctx) }()
	// The shutdown gives the prefetched tasks back while the first runs.
	waitStats(gworkertest.QueueStats{Ready: 3})
	releaseOnce()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if m, _ := e.Backend.Get(ctx, first.ID()); m.Status != result.Success {
		t.Errorf("the running task did not finish: %s", m.Status)
	}
	if n := len(started); n != 0 {
		t.Errorf("%d more tasks started during the shutdown", n)
	}
	if st, _ := e.Broker.Stats(e.Queue()); st.Ready != 3 || st.Unacked != 0 {
		t.Errorf("queue after stop: %+v", st)
	}
}

func TestRunTask(t *testing.T) {
	ctx := context.Background()
	reg := worker.NewRegistry()
	register(reg)
	var tries atomic.Int32
	reg.MustRegister("t.retry", func(ctx context.Context, n int) error {
		tries.Add(1)
		return worker.Retry(worker.PyError("ValueError", "again"), worker.Countdown(time.Minute), worker.WithArgs([]any{n + 1}, nil))
	}, worker.Params("n"))
	reg.MustRegister("t.panic", func() int { panic("kaboom") })
	reg.MustRegister("t.quiet", func() string { return "ok" }, worker.WithOptions(worker.TaskOptions{IgnoreResult: true}))
	reg.MustRegister("t.request", func(ctx context.Context) (string, error) {
		req, _ := worker.RequestFromContext(ctx)
		return req.Hostname, nil
	})

	run, err := gworkertest.RunTask(ctx, reg, "t.add", []any{2}, map[string]any{"y": 3})
	if err != nil || run.State != result.Success || run.Value != int64(5) || run.Err() != nil {
		t.Errorf("add: %+v %v", run, err)
	}
	run, _ = gworkertest.RunTask(ctx, reg, "t.add", []any{1}, nil)
	if run.State != result.Failure || run.Exception.Type != "TypeError" || run.Err() == nil {
		t.Errorf("add(1): %+v", run)
	}
	run, _ = gworkertest.RunTask(ctx, reg, "t.fail", nil, nil)
	if run.Exception.Type != "KeyError" || !strings.Contains(run.Traceback, "KeyError") {
		t.Errorf("fail: %+v", run)
	}
	before := time.Now()
	run, _ = gworkertest.RunTask(ctx, reg, "t.retry", []any{1}, nil)
	if run.State != result.Retry || run.Retry == nil || run.Retry.Retries != 1 || run.Retry.Args[0] != 2 ||
		run.Retry.ETA.Before(before.Add(time.Minute)) || run.Exception.Type != "ValueError" || run.Err() != nil {
		t.Errorf("retry: %+v %+v", run, run.Retry)
	}
	run, _ = gworkertest.RunTask(ctx, reg, "t.retry", []any{1}, nil, producer.Retries(3))
	if run.State != result.Failure || run.Exception.Type != "ValueError" || run.Retry != nil {
		t.Errorf("retry past max_retries: %+v", run)
	}
	if tries.Load() != 2 {
		t.Errorf("retry task ran %d times, want 2", tries.Load())
	}
	run, _ = gworkertest.RunTask(ctx, reg, "t.panic", nil, nil)
	if run.Exception.Type != "RuntimeError" || !strings.Contains(run.Traceback, "kaboom") {
		t.Errorf("panic: %+v", run)
	}
	run, _ = gworkertest.RunTask(ctx, reg, "t.quiet", nil, nil)
	if run.Value != "ok" {
		t.Errorf("ignore_result task: %+v", run)
	}
	run, _ = gworkertest.RunTask(ctx, reg, "t.request", nil, nil)
	if run.Value != gworkertest.DefaultHostname {
		t.Errorf("request: %+v", run)
	}
	run, _ = gworkertest.RunTask(ctx, reg, "t.unknown", nil, nil)
	if run.State != result.Failure || run.Exception.Type != "NotRegistered" {
		t.Errorf("unknown: %+v", run)
	}
	run, _ = gworkertest.RunTask(ctx, reg, "t.add", []any{1, 2}, nil, producer.ExpiresIn(0))
	if run.State != result.Revoked || run.Exception.Type != "TaskRevokedError" {
		t.Errorf("expired: %+v", run)
	}
	run, _ = gworkertest.RunTask(ctx, reg, "t.add", []any{1, 2}, nil, producer.SoftTimeLimit(time.Second))
	if run.Value != int64(3) {
		t.Errorf("with a time limit: %+v", run)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := gworkertest.RunTask(cctx, reg, "t.add", []any{1, 2}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestRunFuncTimeLimit(t *testing.T) {
	run, err := gworkertest.RunFunc(context.Background(), "t.slow", func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}, nil, nil, worker.WithOptions(worker.TaskOptions{SoftTimeLimit: 20 * time.Millisecond}))
	if err != nil || run.Exception == nil || run.Exception.Type != "SoftTimeLimitExceeded" {
		t.Errorf("soft time limit: %+v %v", run, err)
	}
}

// Messages held for their ETA raise the prefetch window (as Celery does),
// so they never starve the tasks behind them; at shutdown they go back to
// the queue.
func TestEnvHeldETAsDoNotStarveTheQueue(t *testing.T) {
	ctx := context.Background()
	e := gworkertest.NewEnv(t, gworkertest.Config{Worker: worker.Config{Concurrency: 1, PrefetchMultiplier: 2}})
	register(e.Registry)
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	const held = 10 // five times the window of 2
	for i := 0; i < held; i++ {
		if _, err := e.SendTask(ctx, "t.add", []any{i, i}, nil, producer.Countdown(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := e.SendTask(ctx, "t.add", []any{20, 22}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := e.Wait(ctx, r.ID()); err != nil || m.Result != int64(42) {
		t.Fatalf("the task behind the held ones: %+v %v", m, err)
	}
	if st, _ := e.Broker.Stats(e.Queue()); st.Unacked != held || st.Ready != 0 {
		t.Errorf("held messages: %+v", st)
	}
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	msgs, _ := e.Broker.Messages(e.Queue())
	if len(msgs) != held {
		t.Fatalf("%d messages back in the queue, want %d", len(msgs), held)
	}
	for _, m := range msgs {
		if !m.Redelivered {
			t.Errorf("a requeued message is not marked redelivered: %v", m.Headers["id"])
		}
	}
}

// A broker that goes away ends the worker's Run with ErrConsumerClosed, as
// a lost RabbitMQ connection does; nothing running is lost.
func TestEnvBrokerClosedUnderTheWorker(t *testing.T) {
	ctx := context.Background()
	e := gworkertest.New(t)
	register(e.Registry)
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r, _ := e.SendTask(ctx, "t.add", []any{1, 2}, nil)
	if _, err := e.Wait(ctx, r.ID()); err != nil {
		t.Fatal(err)
	}
	if err := e.Broker.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the worker still runs after its broker closed")
	}
	if err := e.Stop(ctx); !errors.Is(err, worker.ErrConsumerClosed) {
		t.Errorf("Run after the broker closed: %v", err)
	}
	if _, err := e.SendTask(ctx, "t.add", []any{1, 2}, nil); !errors.Is(err, gworkertest.ErrClosed) {
		t.Errorf("send after the broker closed: %v", err)
	}
}

// A task delivered through a named exchange is retried through the same
// exchange and routing key.
func TestEnvRetryThroughANamedExchange(t *testing.T) {
	ctx := context.Background()
	e := gworkertest.New(t)
	var calls atomic.Int32
	e.Registry.MustRegister("t.again", func() (int, error) {
		if calls.Add(1) < 2 {
			return 0, worker.Retry(nil, worker.Countdown(0))
		}
		return 1, nil
	})
	if err := e.Broker.Bind(ctx, "routed", "key", e.Queue()); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := e.SendTask(ctx, "t.again", nil, nil, producer.Exchange("routed"), producer.RoutingKey("key"))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := e.Wait(ctx, r.ID()); err != nil || m.Result != int64(1) || calls.Load() != 2 {
		t.Fatalf("retried task: %+v %v after %d calls", m, err, calls.Load())
	}
}

package gworker_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/gworker/gworker"
	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-redis's and amqp091-go's connection goroutines end shortly
		// after Close returns.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("time.Sleep"),
	)
}

// removeQueue deletes a task queue an example or test declared.
func removeQueue(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := amqptransport.Dial(ctx, amqptransport.Config{URL: testenv.AMQPURL()})
	if err != nil {
		return
	}
	defer b.Close()
	_, _ = b.DeleteQueue(ctx, name)
}

func newTestApp(t *testing.T, cfg gworker.Config, opts ...gworker.Option) (*gworker.App, string) {
	t.Helper()
	queue := "gworker.app.test." + testenv.Suffix()
	t.Cleanup(func() { removeQueue(queue) })
	cfg.BrokerURL = testenv.AMQPURL()
	cfg.ResultBackend = testenv.RedisURL()
	cfg.Queues = []string{queue}
	cfg.DefaultQueue = queue
	cfg.ResultExpires = time.Minute
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	}
	app, err := gworker.NewApp(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return app, queue
}

// Stop waits for running tasks until its context ends, then cancels them;
// a task that finishes in time is acknowledged and its result stored.
func TestStopWaitsThenCancels(t *testing.T) {
	app, _ := newTestApp(t, gworker.Config{Concurrency: 2})
	started := make(chan string, 2)
	cancelled := make(chan error, 1)
	release := make(chan struct{})
	app.MustRegister("t.block", func(ctx context.Context) (string, error) {
		started <- "block"
		<-ctx.Done()
		cancelled <- context.Cause(ctx)
		return "", ctx.Err()
	})
	app.MustRegister("t.quick", func(ctx context.Context) (string, error) {
		started <- "quick"
		<-release
		return "done", nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := app.Start(ctx); !errors.Is(err, gworker.ErrAlreadyStarted) {
		t.Errorf("second Start: %v", err)
	}
	rb, err := app.SendTask(ctx, "t.block", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rq, err := app.SendTask(ctx, "t.quick", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-started
	<-started
	// The quick task finishes during the warm shutdown; the blocking one
	// is cancelled when Stop's context ends.
	stopCtx, stopCancel := context.WithTimeout(ctx, time.Second)
	defer stopCancel()
	stopped := make(chan error, 1)
	go func() { stopped <- app.Stop(stopCtx) }()
	close(release)
	select {
	case <-cancelled:
	case <-ctx.Done():
		t.Fatal("the running task was never cancelled")
	}
	if err := <-stopped; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop = %v, want the deadline it ran out of", err)
	}
	<-app.Stopped()
	// The results survive the App: read them through a client App.
	client, _ := newTestApp(t, gworker.Config{})
	defer client.Close()
	v, err := mustResult(t, client, rq.ID()).Get(ctx, result.WithTimeout(10*time.Second))
	if err != nil || v != "done" {
		t.Errorf("quick task: %v, %v", v, err)
	}
	_ = rb
}

func mustResult(t *testing.T, a *gworker.App, id string) *result.AsyncResult {
	t.Helper()
	r, err := a.AsyncResult(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Retries reach the broker through the App's producer: a task that
// retries twice succeeds on its third run.
func TestRetryThroughApp(t *testing.T) {
	app, _ := newTestApp(t, gworker.Config{Concurrency: 2})
	var runs atomic.Int64
	app.MustRegister("t.flaky", func(ctx context.Context) (int, error) {
		n := runs.Add(1)
		if n < 3 {
			return 0, worker.Retry(errors.New("not yet"), worker.Countdown(10*time.Millisecond))
		}
		return int(n), nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer app.Stop(ctx)
	r, err := app.SendTask(ctx, "t.flaky", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := r.Get(ctx, result.WithTimeout(30*time.Second))
	if err != nil || v != int64(3) {
		t.Errorf("flaky: %v, %v", v, err)
	}
}

func TestStopBeforeStart(t *testing.T) {
	app := gworker.New(gworker.Config{})
	if err := app.Stop(context.Background()); !errors.Is(err, gworker.ErrNotStarted) {
		t.Errorf("Stop before Start: %v", err)
	}
	if app.Stopped() != nil || app.Err() != nil {
		t.Error("Stopped/Err before Start")
	}
}

// Purge discards what waits in the consumed queues before the worker
// starts (celery worker --purge); what is sent afterwards runs.
func TestPurgeBeforeStart(t *testing.T) {
	app, queue := newTestApp(t, gworker.Config{Purge: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client, err := gworker.NewApp(gworker.Config{BrokerURL: testenv.AMQPURL(), DefaultQueue: queue, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for i := 0; i < 3; i++ {
		if _, err := client.SendTask(ctx, "t.count", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	var runs atomic.Int64
	app.MustRegister("t.count", func(ctx context.Context) (int64, error) { return runs.Add(1), nil })
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer app.Stop(ctx)
	r, err := client.SendTask(ctx, "t.count", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := mustResult(t, app, r.ID()).Get(ctx, result.WithTimeout(20*time.Second))
	if err != nil || v != int64(1) {
		t.Errorf("the task sent after the purge: %v, %v; want the first run (1)", v, err)
	}
}

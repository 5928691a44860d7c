package gworkertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/followup"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// Defaults of an Env.
const (
	// DefaultQueue is the queue an Env's worker consumes and its producer
	// sends to.
	DefaultQueue = producer.DefaultQueue
	// DefaultConcurrency is the worker's concurrency.
	DefaultConcurrency = 4
	// DefaultHostname is the worker's node name.
	DefaultHostname = "celery@gworkertest"
	// DefaultWaitTimeout bounds Wait.
	DefaultWaitTimeout = 10 * time.Second
	// DefaultStopTimeout bounds the warm shutdown of Close; past it the
	// shutdown turns cold.
	DefaultStopTimeout = 30 * time.Second
)

// Errors of an Env.
var (
	// ErrNotStarted: Stop or Worker before Start.
	ErrNotStarted = errors.New("gworkertest: worker not started")
	// ErrStarted: Start called twice.
	ErrStarted = errors.New("gworkertest: worker already started")
	// ErrWaitTimeout: Wait gave up before the task was ready.
	ErrWaitTimeout = errors.New("gworkertest: task not ready in time")
)

// Config configures an Env. The zero value is usable.
type Config struct {
	// Registry holds the tasks the worker runs; a new registry when nil.
	// Register tasks before Start. Celery's builtins (celery.chord_unlock)
	// are added to it unless it has them.
	Registry *worker.Registry
	// Queue is the producer's default queue, and the worker's queue when
	// Worker.Queues is empty; DefaultQueue when empty.
	Queue string
	// Worker configures the worker. Registry, Broker and Backend are set
	// by the Env; Followups defaults to followup.NewFollowups over the Env's
	// producer and backend, Concurrency to DefaultConcurrency, Hostname to
	// DefaultHostname, Logger to Logger.
	Worker worker.Config
	// Producer configures the producer; Backend is the Env's backend and
	// DefaultQueue is Queue.
	Producer producer.Options
	// Logger receives the worker's and producer's logs; none when nil.
	Logger *zap.Logger
	// WaitTimeout bounds Wait (DefaultWaitTimeout when 0).
	WaitTimeout time.Duration
	// StopTimeout bounds the warm shutdown of Close (DefaultStopTimeout
	// when 0).
	StopTimeout time.Duration
}

// Env is a worker, a producer and a result backend wired to an in-memory
// broker and backend: tasks, retries, chains, groups and chords run as
// they would against RabbitMQ and Redis, with no server.
//
// In a test, NewEnv (or New) builds it and stops it when the test ends;
// elsewhere Open and Close do.
type Env struct {
	// Registry is the worker's task registry.
	Registry *worker.Registry
	// Broker is the in-memory broker the producer publishes to and the
	// worker consumes from.
	Broker *Broker
	// Backend is the in-memory result backend.
	Backend *Backend
	// Producer sends tasks (and canvas) to the worker's queue by default.
	Producer *producer.Producer

	cfg   Config
	queue string
	log   *zap.Logger

	mu      sync.Mutex
	w       *worker.Worker
	cancel  context.CancelFunc
	done    chan struct{}
	runErr  error
	closed  bool
	stopped bool // Stop was called
}

// Open builds an Env whose worker is not started yet.
func Open(cfg Config) (*Env, error) {
	if cfg.Queue == "" {
		cfg.Queue = DefaultQueue
	}
	if cfg.WaitTimeout == 0 {
		cfg.WaitTimeout = DefaultWaitTimeout
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	if cfg.WaitTimeout < 0 || cfg.StopTimeout < 0 {
		return nil, errors.New("gworkertest: negative WaitTimeout or StopTimeout")
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	e := &Env{Registry: cfg.Registry, Broker: NewBroker(), Backend: NewBackend(), cfg: cfg, queue: cfg.Queue, log: log}
	if e.Registry == nil {
		e.Registry = worker.NewRegistry()
	}
	po := cfg.Producer
	po.Backend = e.Backend
	po.DefaultQueue = cfg.Queue
	if po.Logger == nil {
		po.Logger = log
	}
	e.Producer = producer.New(e.Broker, po)
	if _, err := e.Registry.Lookup(followup.ChordUnlockTask); err != nil {
		if err := followup.RegisterBuiltins(e.Registry, e.Producer, e.Backend, log); err != nil {
			return nil, err
		}
	}
	queues := cfg.Worker.Queues
	if len(queues) == 0 {
		queues = []string{cfg.Queue}
	}
	// Declared now, so that tasks sent before Start wait for the worker.
	for _, q := range append([]string{cfg.Queue}, queues...) {
		if err := e.Broker.DeclareTaskQueue(context.Background(), q); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// NewEnv builds an Env for a test and closes it when the test ends (the
// worker shuts down warmly, then the broker closes). It fails the test if
// the Env cannot be built or does not stop cleanly.
func NewEnv(tb testing.TB, cfg Config) *Env {
	tb.Helper()
	e, err := Open(cfg)
	if err != nil {
		tb.Fatalf("gworkertest: %v", err)
	}
	tb.Cleanup(func() {
		if err := e.Close(); err != nil {
			tb.Errorf("gworkertest: close: %v", err)
		}
	})
	return e
}

// New is NewEnv with the default Config.
func New(tb testing.TB) *Env {
	tb.Helper()
	return NewEnv(tb, Config{})
}

// Queue returns the producer's default queue.
func (e *Env) Queue() string { return e.queue }

// Start builds the worker from the registry as it is now, runs it in the
// background until ctx ends, Stop or Close, and returns once it consumes
// (or with the error that stopped it first).
func (e *Env) Start(ctx context.Context) error {
	w, done, err := e.start(ctx)
	if err != nil {
		return err
	}
	select {
	case <-w.Ready():
		return nil
	case <-done:
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.runErr
	}
}

// start builds and starts the worker under the Env's lock.
func (e *Env) start(ctx context.Context) (*worker.Worker, chan struct{}, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, nil, ErrClosed
	}
	if e.w != nil {
		return nil, nil, ErrStarted
	}
	wc := e.cfg.Worker
	wc.Registry, wc.Broker, wc.Backend = e.Registry, e.Broker, e.Backend
	if len(wc.Queues) == 0 {
		wc.Queues = []string{e.queue}
	}
	if wc.Followups == nil {
		wc.Followups = followup.NewFollowups(e.Producer, e.Backend, e.log)
	}
	if wc.Concurrency == 0 {
		wc.Concurrency = DefaultConcurrency
	}
	if wc.Hostname == "" {
		wc.Hostname = DefaultHostname
	}
	if wc.Logger == nil {
		wc.Logger = e.log
	}
	w, err := worker.New(wc)
	if err != nil {
		return nil, nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	e.w, e.cancel, e.done = w, cancel, done
	go func() {
		err := w.Run(rctx)
		e.mu.Lock()
		e.runErr = err
		e.mu.Unlock()
		close(done)
	}()
	return w, done, nil
}

// Worker returns the running worker (nil before Start).
func (e *Env) Worker() *worker.Worker {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.w
}

// Done returns a channel closed when the worker's Run has returned (by
// Stop, Close, the end of Start's context, or on its own, e.g. when the
// broker was closed under it); nil before Start.
func (e *Env) Done() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.done
}

// Stop shuts the worker down warmly (running tasks finish, the others go
// back to the queue) and returns Run's error. If ctx ends first the
// shutdown turns cold (worker.Terminate) and Stop returns ctx's error once
// Run has returned. Stop after Stop returns the same result.
func (e *Env) Stop(ctx context.Context) error {
	e.mu.Lock()
	w, cancel, done := e.w, e.cancel, e.done
	e.stopped = w != nil
	e.mu.Unlock()
	if w == nil {
		return ErrNotStarted
	}
	cancel()
	select {
	case <-done:
	case <-ctx.Done():
		w.Terminate()
		<-done
		return fmt.Errorf("gworkertest: warm shutdown did not end: %w", ctx.Err())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.runErr
}

// Close stops the worker if it runs (within StopTimeout) and closes the
// broker. It returns Run's error unless Stop already returned it. It is
// idempotent.
func (e *Env) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	stop := e.w != nil && !e.stopped
	e.mu.Unlock()
	var err error
	if stop {
		ctx, cancel := context.WithTimeout(context.Background(), e.cfg.StopTimeout)
		err = e.Stop(ctx)
		cancel()
	}
	return errors.Join(err, e.Broker.Close())
}

// SendTask sends a task through the Env's producer (to Queue unless opts
// route it elsewhere) and returns its result.
func (e *Env) SendTask(ctx context.Context, name string, args []any, kwargs map[string]any, opts ...producer.Option) (*result.AsyncResult, error) {
	return e.Producer.SendTask(ctx, name, args, kwargs, opts...)
}

// Wait waits until the task id is ready (SUCCESS, FAILURE or REVOKED) and
// returns its stored meta, decoded as Python would read it. It gives up
// after WaitTimeout with an error wrapping ErrWaitTimeout that names the
// task's last state.
func (e *Env) Wait(ctx context.Context, id string) (*result.Meta, error) {
	wctx, cancel := context.WithTimeout(ctx, e.cfg.WaitTimeout)
	defer cancel()
	var got *result.Meta
	err := e.Backend.WaitReady(wctx, []string{id}, func(m *result.Meta) { got = m })
	if err == nil {
		return got, nil
	}
	if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		state := result.Pending
		if m, gerr := e.Backend.Get(context.Background(), id); gerr == nil {
			state = m.Status
		}
		return nil, fmt.Errorf("%w: task %s is %s after %v", ErrWaitTimeout, id, state, e.cfg.WaitTimeout)
	}
	return nil, err
}

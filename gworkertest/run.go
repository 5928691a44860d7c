package gworkertest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// runQueue is the private queue of RunTask's worker.
const runQueue = "gworkertest.run"

// TaskRun is how one task ran under RunTask.
type TaskRun struct {
	// ID is the task id.
	ID string
	// State is SUCCESS, FAILURE, RETRY or REVOKED (PENDING if the worker
	// stored nothing, which it does only for a message it could not read).
	State result.State
	// Value is the return value as Python would read it back from the
	// result backend (an int is an int64, a struct a map[string]any...).
	Value any
	// Exception is the Python exception of FAILURE and REVOKED, and the
	// one the task retried on for RETRY (nil for a plain retry).
	Exception *protocol.Exception
	// Traceback is the stored traceback ("" when none).
	Traceback string
	// Retry describes the message the worker would have published for a
	// retry (State RETRY); it is not run.
	Retry *RetryMessage
	// Meta is the stored result meta (nil when PENDING).
	Meta *result.Meta
}

// RetryMessage is the task message of a retry.
type RetryMessage struct {
	// ETA is when the retry is due.
	ETA time.Time
	// Retries is the retry count the message carries (the run's + 1).
	Retries int
	// Args and Kwargs are the retry's arguments (the run's unless the task
	// gave new ones with worker.WithArgs).
	Args   []any
	Kwargs map[string]any
}

// Err returns the task's exception for FAILURE and REVOKED, nil otherwise.
func (r *TaskRun) Err() error {
	if (r.State == result.Failure || r.State == result.Revoked) && r.Exception != nil {
		return r.Exception
	}
	return nil
}

// RunTask runs the task name of reg once, as a worker would run a message
// sent with args, kwargs and opts: the message is encoded and decoded,
// arguments are bound as Python binds them, time limits, panics, retries
// and autoretry apply, errors become Python exceptions, and the result goes
// through the same JSON as on Redis. Routing options are ignored (the
// message goes to a private queue); a countdown or ETA is waited for; an
// expired message is revoked by the worker (the broker's TTL is not
// applied).
// Nothing is sent after the task: a retry is reported in TaskRun.Retry, not
// run, and callbacks are not applied. The result is reported even when the
// task ignores results. An unregistered name is a FAILURE with Celery's
// NotRegistered, as a worker stores it.
//
// The returned error is for RunTask's own failures (ctx ended, the message
// could not be built); the task's failure is in the TaskRun.
func RunTask(ctx context.Context, reg *worker.Registry, name string, args []any, kwargs map[string]any, opts ...producer.Option) (*TaskRun, error) {
	if reg == nil {
		return nil, errors.New("gworkertest: RunTask needs a registry")
	}
	one := worker.NewRegistry()
	if t, err := reg.Lookup(name); err == nil {
		o := t.Options
		o.IgnoreResult = false
		if err := one.Handle(name, t.Handler, worker.WithOptions(o)); err != nil {
			return nil, err
		}
	}
	broker, backend := NewBroker(), NewBackend()
	defer broker.Close()
	p := producer.New(broker, producer.Options{Backend: backend, DefaultQueue: runQueue})
	msg, err := p.Build(name, args, kwargs, opts...)
	if err != nil {
		return nil, err
	}
	msg.IgnoreResult = false
	msg.Route = producer.Route{RoutingKey: runQueue, Declare: runQueue}
	msg.Exchange, msg.RoutingKey = "", runQueue
	// The worker's own expiry check applies; the broker's TTL would drop
	// the message unseen.
	msg.Expiration = ""
	if err := p.PublishMessage(ctx, msg); err != nil {
		return nil, err
	}
	rec := &retryRecorder{}
	w, err := worker.New(worker.Config{
		Registry: one, Broker: broker, Backend: backend, Followups: rec,
		Queues: []string{runQueue}, Concurrency: 1, Hostname: DefaultHostname,
		// Held until due, however far: nothing here times deliveries out.
		ETAHorizon: time.Duration(math.MaxInt64),
	})
	if err != nil {
		return nil, err
	}
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	// The message leaves the queue once acknowledged or rejected; a warm
	// shutdown then waits for the task if it is still running.
	waitErr := broker.WaitEmpty(ctx, runQueue)
	stop()
	if waitErr != nil {
		w.Terminate()
	}
	if err := <-done; err != nil {
		return nil, fmt.Errorf("gworkertest: worker: %w", err)
	}
	if waitErr != nil {
		return nil, waitErr
	}
	return report(ctx, backend, msg.ID, rec.get())
}

// RunFunc registers fn under name with opts in a registry of its own and
// runs it once with RunTask.
func RunFunc(ctx context.Context, name string, fn any, args []any, kwargs map[string]any, opts ...worker.Option) (*TaskRun, error) {
	reg := worker.NewRegistry()
	if err := reg.Register(name, fn, opts...); err != nil {
		return nil, err
	}
	return RunTask(ctx, reg, name, args, kwargs)
}

func report(ctx context.Context, b *Backend, id string, retry *RetryMessage) (*TaskRun, error) {
	m, err := b.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	run := &TaskRun{ID: id, State: m.Status, Traceback: m.Traceback, Retry: retry}
	if m.Status == result.Pending {
		return run, nil
	}
	run.Meta = m
	if m.Status.Exceptional() {
		if m.Result != nil {
			exc, err := protocol.ExceptionFromValue(m.Result)
			if err != nil {
				return nil, fmt.Errorf("gworkertest: task %s: stored %s result: %w", id, m.Status, err)
			}
			if exc.Traceback == "" {
				exc.Traceback = m.Traceback
			}
			run.Exception = exc
		}
		return run, nil
	}
	run.Value = m.Result
	return run, nil
}

// retryRecorder is the Followups of RunTask's worker: it keeps the retry
// instead of publishing it and sends nothing else.
type retryRecorder struct {
	mu    sync.Mutex
	retry *RetryMessage
}

func (r *retryRecorder) get() *RetryMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.retry
}

func (r *retryRecorder) AfterSuccess(context.Context, *protocol.Message, any) ([]any, error) {
	return nil, nil
}

func (r *retryRecorder) AfterFailure(context.Context, *protocol.Message, *protocol.Exception, string) error {
	return nil
}

func (r *retryRecorder) ChordPart(context.Context, *protocol.Message, result.State, any) error {
	return nil
}

func (r *retryRecorder) Retry(_ context.Context, msg *protocol.Message, eta time.Time, args []any, kwargs map[string]any) error {
	rm := &RetryMessage{ETA: eta.UTC(), Retries: msg.Retries + 1, Args: msg.Args, Kwargs: msg.Kwargs}
	if args != nil {
		rm.Args = args
	}
	if kwargs != nil {
		rm.Kwargs = kwargs
	}
	r.mu.Lock()
	r.retry = rm
	r.mu.Unlock()
	return nil
}

func (r *retryRecorder) Republish(context.Context, *protocol.Message, *protocol.RawMessage) error {
	return errors.New("gworkertest: RunTask holds ETAs until due")
}

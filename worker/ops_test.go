package worker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// opsBroker is an in-memory worker.Broker: a channel per queue.
type opsBroker struct {
	mu     sync.Mutex
	queues map[string]chan worker.Delivery
}

func newOpsBroker() *opsBroker { return &opsBroker{queues: map[string]chan worker.Delivery{}} }

func (b *opsBroker) q(name string) chan worker.Delivery {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.queues[name] == nil {
		b.queues[name] = make(chan worker.Delivery, 1000)
	}
	return b.queues[name]
}

func (b *opsBroker) Consume(ctx context.Context, queues []string, prefetch int) (worker.Consumer, error) {
	c := &opsConsumer{out: make(chan worker.Delivery), stop: make(chan struct{})}
	for _, n := range queues {
		in := b.q(n)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			for {
				select {
				case d := <-in:
					select {
					case c.out <- d:
					case <-c.stop:
						in <- d
						return
					}
				case <-c.stop:
					return
				}
			}
		}()
	}
	return c, nil
}

type opsConsumer struct {
	out  chan worker.Delivery
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func (c *opsConsumer) Deliveries() <-chan worker.Delivery { return c.out }
func (c *opsConsumer) SetPrefetch(int) error              { return nil }
func (c *opsConsumer) Cancel(context.Context) error {
	c.once.Do(func() {
		close(c.stop)
		go func() { c.wg.Wait(); close(c.out) }()
	})
	return nil
}
func (c *opsConsumer) Close() error { return c.Cancel(context.Background()) }

// opsDelivery records how it was settled.
type opsDelivery struct {
	raw     *protocol.RawMessage
	settled chan string // "ack", "requeue" or "reject"
}

func (d *opsDelivery) Raw() *protocol.RawMessage { return d.raw }
func (d *opsDelivery) Ack() error                { d.settled <- "ack"; return nil }
func (d *opsDelivery) Reject(requeue bool) error {
	if requeue {
		d.settled <- "requeue"
	} else {
		d.settled <- "reject"
	}
	return nil
}

// opsBackend keeps the last meta stored per id and signals every store.
type opsBackend struct {
	mu     sync.Mutex
	metas  map[string]*result.Meta
	stored chan *result.Meta
}

func newOpsBackend() *opsBackend {
	return &opsBackend{metas: map[string]*result.Meta{}, stored: make(chan *result.Meta, 1000)}
}

func (b *opsBackend) Store(ctx context.Context, m *result.Meta) error {
	b.mu.Lock()
	b.metas[m.TaskID] = m
	b.mu.Unlock()
	b.stored <- m
	return nil
}
func (b *opsBackend) Get(ctx context.Context, id string) (*result.Meta, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m := b.metas[id]; m != nil {
		return m, nil
	}
	return &result.Meta{TaskID: id, Status: result.Pending}, nil
}
func (b *opsBackend) Forget(ctx context.Context, id string) error { return nil }

// sink collects task events.
type sink struct{ ch chan *worker.TaskEvent }

func (s *sink) TaskEvent(ev *worker.TaskEvent) { s.ch <- ev }

type opsEnv struct {
	t       *testing.T
	broker  *opsBroker
	backend *opsBackend
	events  *sink
	w       *worker.Worker
	cancel  context.CancelFunc
	done    chan error
	// release unblocks every "block" task.
	release chan struct{}
	// running receives the id of every "block" task that starts.
	running chan string
	ctxErr  chan error
}

func newOpsEnv(t *testing.T, concurrency int) *opsEnv {
	t.Helper()
	e := &opsEnv{t: t, broker: newOpsBroker(), backend: newOpsBackend(), events: &sink{ch: make(chan *worker.TaskEvent, 1000)},
		done: make(chan error, 1), release: make(chan struct{}), running: make(chan string, 100), ctxErr: make(chan error, 100)}
	reg := worker.NewRegistry()
	reg.MustRegister("t.add", func(a, b int64) int64 { return a + b })
	if err := reg.Handle("t.block", func(ctx context.Context, args []any, kw map[string]any) (any, error) {
		r, _ := worker.RequestFromContext(ctx)
		e.running <- r.ID
		select {
		case <-e.release:
			return "done", nil
		case <-ctx.Done():
			e.ctxErr <- context.Cause(ctx)
			return nil, ctx.Err()
		}
	}); err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Config{Registry: reg, Broker: e.broker, Backend: e.backend, Concurrency: concurrency, DisableFollowups: true,
		Hostname: "go@test", Events: e.events, Queues: []string{"q"}})
	if err != nil {
		t.Fatal(err)
	}
	e.w = w
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.done <- w.Run(ctx) }()
	t.Cleanup(e.stop)
	waitOn(t, w.Ready(), "the worker to consume")
	return e
}

func (e *opsEnv) stop() {
	select {
	case <-e.release:
	default:
		close(e.release)
	}
	e.cancel()
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Error(err)
		}
	case <-time.After(20 * time.Second):
		e.t.Error("worker did not stop")
	}
}

func (e *opsEnv) send(queue, id, task string, args []any, eta *time.Time) *opsDelivery {
	e.t.Helper()
	raw, err := protocol.Encode(&protocol.Message{ID: id, Task: task, Args: args, Kwargs: map[string]any{}, ETA: eta}, protocol.EncodeOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	raw.RoutingKey = queue
	d := &opsDelivery{raw: raw, settled: make(chan string, 2)}
	e.broker.q(queue) <- d
	return d
}

func waitOn[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// waitStored waits for the final state of id.
func (e *opsEnv) waitStored(id string) *result.Meta {
	e.t.Helper()
	for {
		m := waitOn(e.t, e.backend.stored, "a stored result of "+id)
		if m.TaskID == id && m.Status.Ready() {
			return m
		}
	}
}

func (e *opsEnv) waitEvent(typ, id string) *worker.TaskEvent {
	e.t.Helper()
	for {
		ev := waitOn(e.t, e.events.ch, typ+" of "+id)
		if ev.Type == typ && ev.Message.ID == id {
			return ev
		}
	}
}

func revokedReason(t *testing.T, m *result.Meta) string {
	t.Helper()
	if m.Status != result.Revoked {
		t.Fatalf("state %s, want REVOKED", m.Status)
	}
	d, ok := m.Result.(protocol.Dict)
	if !ok {
		t.Fatalf("result %#v is not an exception dict", m.Result)
	}
	var typ string
	var args []any
	for _, kv := range d {
		switch kv.Key {
		case "exc_type":
			typ, _ = kv.Value.(string)
		case "exc_message":
			args, _ = kv.Value.([]any)
		}
	}
	if typ != "TaskRevokedError" || len(args) != 1 {
		t.Fatalf("result %v, want TaskRevokedError(reason)", d)
	}
	return args[0].(string)
}

func TestRevokedTaskReceivedLaterIsNotRun(t *testing.T) {
	e := newOpsEnv(t, 2)
	e.w.Revoke([]string{"r-1"}, false, "")
	d := e.send("q", "r-1", "t.add", []any{int64(1), int64(2)}, nil)
	if got := revokedReason(t, e.waitStored("r-1")); got != "revoked" {
		t.Fatalf("reason %q", got)
	}
	if s := waitOn(t, d.settled, "ack"); s != "ack" {
		t.Fatalf("message %s, want ack", s)
	}
	ev := e.waitEvent(worker.EventTaskRevoked, "r-1")
	if ev.Terminated || ev.Expired {
		t.Fatalf("event %+v", ev)
	}
	// A task that was not revoked still runs.
	e.send("q", "ok-1", "t.add", []any{int64(1), int64(2)}, nil)
	if m := e.waitStored("ok-1"); m.Status != result.Success {
		t.Fatalf("state %s", m.Status)
	}
	if ids := e.w.RevokedSet().IDs(); len(ids) != 1 || ids[0] != "r-1" {
		t.Fatalf("revoked ids %v", ids)
	}
}

func TestRevokeOfAHeldETATaskDiscardsItNow(t *testing.T) {
	e := newOpsEnv(t, 2)
	eta := time.Now().Add(time.Hour)
	d := e.send("q", "eta-1", "t.add", []any{int64(1), int64(2)}, &eta)
	e.waitEvent(worker.EventTaskReceived, "eta-1")
	sched := e.w.Inspector().Scheduled()
	if len(sched) != 1 || sched[0].Request.ID != "eta-1" || !sched[0].ETA.Equal(eta.Truncate(time.Microsecond)) || sched[0].Priority != worker.ScheduledPriority {
		t.Fatalf("scheduled %+v", sched)
	}
	e.w.Revoke([]string{"eta-1"}, false, "")
	if got := revokedReason(t, e.waitStored("eta-1")); got != "revoked" {
		t.Fatalf("reason %q", got)
	}
	if s := waitOn(t, d.settled, "ack"); s != "ack" {
		t.Fatalf("message %s", s)
	}
	if n := len(e.w.Inspector().Scheduled()); n != 0 {
		t.Fatalf("%d still scheduled", n)
	}
}

func TestTerminateCancelsARunningTask(t *testing.T) {
	e := newOpsEnv(t, 2)
	d := e.send("q", "run-1", "t.block", nil, nil)
	waitOn(t, e.running, "the task to start")
	act := e.w.Inspector().Active()
	if len(act) != 1 || act[0].ID != "run-1" || act[0].TimeStart.IsZero() || !act[0].Acknowledged || act[0].WorkerPID == 0 || act[0].Hostname != "go@test" {
		t.Fatalf("active %+v", act)
	}
	if q := e.w.Inspector().QueryTasks("run-1", "nope"); len(q) != 1 || q["run-1"].State != "active" {
		t.Fatalf("query %+v", q)
	}
	term := e.w.Revoke([]string{"run-1"}, true, "SIGTERM")
	if len(term) != 1 || term[0] != "run-1" {
		t.Fatalf("terminated %v", term)
	}
	if cause := waitOn(t, e.ctxErr, "the task's context to end"); !errors.Is(cause, worker.ErrTerminated) {
		t.Fatalf("cause %v", cause)
	}
	m := e.waitStored("run-1")
	if revokedReason(t, m) == "revoked" { // stored at once by Revoke, as Celery 5.6.2
		m = e.waitStored("run-1")
	}
	if got := revokedReason(t, m); got != "terminated" {
		t.Fatalf("reason %q", got)
	}
	if ev := e.waitEvent(worker.EventTaskRevoked, "run-1"); !ev.Terminated || ev.Signal != "SIGTERM" {
		t.Fatalf("event %+v", ev)
	}
	if s := waitOn(t, d.settled, "ack"); s != "ack" {
		t.Fatalf("message %s", s)
	}
	if n := e.w.Inspector().ActiveCount(); n != 0 {
		t.Fatalf("%d active", n)
	}
	if tot := e.w.Inspector().Totals(); tot["t.block"] != 1 {
		t.Fatalf("totals %v", tot)
	}
}

func TestReservedTasksAndEventsInOrder(t *testing.T) {
	e := newOpsEnv(t, 1)
	e.send("q", "b-1", "t.block", nil, nil)
	waitOn(t, e.running, "the first task")
	e.send("q", "a-1", "t.add", []any{int64(2), int64(3)}, nil)
	e.waitEvent(worker.EventTaskReceived, "a-1")
	// The event is sent just before the task joins the queue.
	waitFor(t, "a reserved task", 20*time.Second, func() bool { return len(e.w.Inspector().Reserved()) == 1 })
	res := e.w.Inspector().Reserved()
	if len(res) != 1 || res[0].ID != "a-1" || !res[0].TimeStart.IsZero() || res[0].WorkerPID != 0 {
		t.Fatalf("reserved %+v", res)
	}
	// A revoked task waiting for a slot is discarded when its turn comes.
	e.send("q", "a-2", "t.add", []any{int64(2), int64(3)}, nil)
	e.waitEvent(worker.EventTaskReceived, "a-2")
	e.w.Revoke([]string{"a-2"}, false, "")
	close(e.release)
	ev := e.waitEvent(worker.EventTaskStarted, "a-1")
	ev = e.waitEvent(worker.EventTaskSucceeded, "a-1")
	if ev.Result != int64(5) || ev.Runtime <= 0 {
		t.Fatalf("succeeded %+v", ev)
	}
	if got := revokedReason(t, e.waitStored("a-2")); got != "revoked" {
		t.Fatalf("reason %q", got)
	}
	if n := e.w.Inspector().Processed(); n != 2 {
		t.Fatalf("processed %d", n)
	}
}

func TestPoolGrowsAndShrinks(t *testing.T) {
	e := newOpsEnv(t, 1)
	e.send("q", "g-1", "t.block", nil, nil)
	e.send("q", "g-2", "t.block", nil, nil)
	waitOn(t, e.running, "the first task")
	if err := e.w.Controls().ResizePool(1); err != nil {
		t.Fatal(err)
	}
	// The second task starts only because the pool grew.
	waitOn(t, e.running, "the second task")
	if c := e.w.Inspector().Concurrency(); c != 2 {
		t.Fatalf("concurrency %d", c)
	}
	if err := e.w.Controls().ResizePool(-2); !errors.Is(err, worker.ErrPoolSize) {
		t.Fatalf("shrink to 0: %v", err)
	}
	if err := e.w.Controls().ResizePool(-1); err != nil {
		t.Fatal(err)
	}
	if c := e.w.Inspector().Concurrency(); c != 1 {
		t.Fatalf("concurrency %d", c)
	}
}

func TestAddAndCancelQueue(t *testing.T) {
	e := newOpsEnv(t, 2)
	if err := e.w.Controls().AddQueue(context.Background(), "extra"); err != nil {
		t.Fatal(err)
	}
	if qs := e.w.Inspector().Queues(); len(qs) != 2 || qs[1] != "extra" {
		t.Fatalf("queues %v", qs)
	}
	e.send("extra", "x-1", "t.add", []any{int64(1), int64(1)}, nil)
	if m := e.waitStored("x-1"); m.Status != result.Success {
		t.Fatalf("state %s", m.Status)
	}
	if err := e.w.Controls().CancelQueue(context.Background(), "q"); !errors.Is(err, worker.ErrStartupQueue) {
		t.Fatalf("cancel start-up queue: %v", err)
	}
	if err := e.w.Controls().CancelQueue(context.Background(), "nope"); !errors.Is(err, worker.ErrNotConsuming) {
		t.Fatalf("cancel unknown queue: %v", err)
	}
	if err := e.w.Controls().CancelQueue(context.Background(), "extra"); err != nil {
		t.Fatal(err)
	}
	if qs := e.w.Inspector().Queues(); len(qs) != 1 {
		t.Fatalf("queues %v", qs)
	}
}

func TestRuntimeLimitChanges(t *testing.T) {
	e := newOpsEnv(t, 2)
	if err := e.w.Controls().SetTimeLimit("nope", time.Second, 0); !errors.Is(err, worker.ErrUnknownTask) {
		t.Fatalf("unknown task: %v", err)
	}
	if err := e.w.Controls().SetRateLimit("nope", "1/s"); !errors.Is(err, worker.ErrUnknownTask) {
		t.Fatalf("unknown task: %v", err)
	}
	if err := e.w.Controls().SetRateLimit("t.add", "x/s"); err == nil {
		t.Fatal("a bad rate limit was accepted")
	}
	if err := e.w.Controls().SetTimeLimit("t.block", 50*time.Millisecond, 0); err != nil {
		t.Fatal(err)
	}
	e.send("q", "tl-1", "t.block", nil, nil)
	m := e.waitStored("tl-1")
	if m.Status != result.Failure {
		t.Fatalf("state %s, want FAILURE by the soft time limit", m.Status)
	}
}

func TestRevokedSetLimits(t *testing.T) {
	s := worker.NewRevokedSet(3, time.Hour)
	s.Add("a", "b", "c")
	s.Add("d")
	if s.Len() != 3 || s.Contains("a") && s.Contains("b") && s.Contains("c") {
		t.Fatalf("a full set must drop its oldest: %v", s.IDs())
	}
	if !s.Contains("d") {
		t.Fatal("newest id lost")
	}
	s.AddAt("old", time.Now().Add(-2*time.Hour))
	if s.Contains("old") {
		t.Fatal("an expired id was kept")
	}
	s = worker.NewRevokedSet(0, 0)
	s.AddAt("x", time.Now().Add(-30*time.Minute))
	if !s.Contains("x") {
		t.Fatal("a merged id was lost")
	}
}

// As Celery 5.6.2's revoke, REVOKED is stored at once for a revoked id,
// before any worker receives the task, so a client waiting on it learns
// it now.
func TestRevokeStoresRevokedAtOnce(t *testing.T) {
	e := newOpsEnv(t, 2)
	e.w.Revoke([]string{"never-sent"}, false, "")
	m := e.waitStored("never-sent")
	if m.Status != result.Revoked || revokedReason(t, m) != "revoked" {
		t.Fatalf("stored %s %v", m.Status, m.Result)
	}
}

// Package worker runs registered Go functions for Celery task messages:
// the registry and argument binding, bounded concurrency, acknowledgements,
// results, retries, ETA, expiry, time and rate limits, and what runs after a
// task (callbacks, chains, chords).
package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/config"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// Config configures a Worker. Registry and Broker are required.
type Config struct {
	Registry *Registry
	Broker   Broker
	// Backend stores results; nil runs tasks without storing results.
	Backend result.Backend
	// Followups sends what runs after a task (callbacks, chains, chord
	// bodies, retries, far ETAs). Required unless DisableFollowups is set:
	// a worker that can publish nothing would lose every retry.
	Followups Followups
	// DisableFollowups runs a worker without Followups: callbacks, chains
	// and chord bodies are not sent, and a retry fails the task.
	DisableFollowups bool
	// TimeLimit and SoftTimeLimit apply to tasks whose message and
	// registration give none (celery worker --time-limit/--soft-time-limit).
	TimeLimit, SoftTimeLimit time.Duration
	// Queues to consume; default ["celery"].
	Queues []string
	// Concurrency is the number of tasks run at once; as Celery, the
	// number of CPUs when 0. A task's slot is free once its handler
	// returns: storing its result and settling its message go on beside
	// the next task, for at most two tasks per slot at once (beyond that
	// the slot waits for the result store).
	Concurrency int
	// MaxConcurrency caps the pool size, also when pool_grow commands add
	// up (Controls.ResizePool); default config.DefaultMaxConcurrency.
	// Concurrency must not exceed it.
	MaxConcurrency int
	// PrefetchMultiplier × Concurrency messages are prefetched; default 4.
	// A negative value asks the broker for no limit.
	PrefetchMultiplier int
	// AcksLate acknowledges messages after the task, not before.
	AcksLate bool
	// Hostname is the node name, e.g. "celery@host".
	Hostname string
	// Accept lists accepted content types (default: JSON only).
	Accept []string
	// MaxBodySize caps decompressed bodies (default 16 MiB).
	MaxBodySize int
	// MaxBodyValues caps the values a body decodes to (default
	// protocol.DefaultMaxValues; negative: no cap). Beyond either cap a
	// message is rejected with a log line that gives the reason.
	MaxBodyValues int
	// ResultExtended stores name, args, kwargs, worker, retries and queue.
	ResultExtended bool
	// TrackStarted stores STARTED before running tasks.
	TrackStarted bool
	// MaxHeldETA caps how many ETA/countdown messages raise the prefetch
	// window while they wait (default 10,000); beyond it they wait inside
	// the normal window, which throttles consumption instead of memory.
	MaxHeldETA int
	// MaxHeldETABytes caps the body bytes of the held messages that raise
	// the prefetch window (default DefaultMaxHeldETABytes; negative: no
	// byte cap). Beyond it, further ETA messages wait inside the normal
	// window, as beyond MaxHeldETA.
	MaxHeldETABytes int64
	// MaxPendingResults caps how many final results of early-acknowledged
	// tasks are kept in memory while the result store is down (default
	// DefaultMaxPendingResults; negative: none, such a result is given up
	// after the store's few quick retries). They are stored as soon as the
	// store is back; the ids still pending at shutdown are logged.
	MaxPendingResults int
	// ETAHorizon: a message due later than this is held only until the
	// horizon, then published again unchanged and acknowledged, so that no
	// delivery stays unacknowledged past RabbitMQ's consumer_timeout
	// (default 25 minutes). Needs Followups.
	ETAHorizon time.Duration
	// MaxRedeliveries caps how many times the message of an acks_late task
	// that never finished (its worker was killed, or hung and lost its
	// connection) is delivered again: past 1 + MaxRedeliveries deliveries
	// the task fails with WorkerLostError and the message is rejected
	// without requeue (dead-lettered when its queue has a dead-letter
	// exchange). Default DefaultMaxRedeliveries; negative: no cap. See
	// poison.go for how deliveries are counted.
	MaxRedeliveries int
	// Logger receives the worker's log lines; nil logs nothing.
	Logger *zap.Logger
	// Events receives task events (task-received, -started, -succeeded,
	// -failed, -retried, -rejected, -revoked); nil sends none.
	Events EventSink
	// Revoked is the set of revoked task ids; nil starts an empty one
	// with Celery's limits. Share one to persist or merge it.
	Revoked *RevokedSet
	// Middleware wraps the running of every task (tracing, error
	// reporting, audit logs); the first one is the outermost. See
	// Middleware.
	Middleware []Middleware
}

// Worker consumes task messages and runs them. It is made of parts, each
// with one job and tested on its own; the Worker receives messages and
// routes them between its parts.
type Worker struct {
	cfg    Config
	log    *zap.Logger
	decode protocol.DecodeOptions
	pid    int

	started  atomic.Bool    // Run was called
	ready    chan struct{}  // closed once consuming
	stopping atomic.Bool    // a shutdown began
	inflight sync.WaitGroup // jobs received and not yet finished
	// base is the parent of every task context; Terminate cancels it.
	base       context.Context
	cancelBase context.CancelFunc

	// The parts, about in the order a message meets them.
	consumers  *consumers      // the consumed queues
	revocation *revocation     // revoked and expired tasks
	hold       *hold           // ETA and rate-limit waits, the prefetch window
	pool       *pool           // bounded concurrency
	exec       *executor       // begin, run and settle a task
	active     *activeTasks    // the running tasks
	results    *resultWriter   // result metas and their storing
	pending    *pendingResults // results waiting for the store to come back
	followups  *followupSender // callbacks, chains, chords
	events     *taskEvents     // task events
	counts     counters        // what Stats reports
	limits     *rateLimits     // shared by the hold and Controls
	timeLimits *timeLimits     // shared by the runner and Controls

	inspector Inspector // the read-only view
	controls  Controls  // changes at run time
}

// New checks cfg and returns a worker.
func New(cfg Config) (*Worker, error) {
	if cfg.Registry == nil || cfg.Broker == nil {
		return nil, errors.New("worker: Registry and Broker are required")
	}
	if cfg.Followups == nil && !cfg.DisableFollowups {
		return nil, ErrNoFollowups
	}
	if cfg.TimeLimit < 0 || cfg.SoftTimeLimit < 0 {
		return nil, errors.New("worker: TimeLimit and SoftTimeLimit must not be negative")
	}
	if len(cfg.Queues) == 0 {
		cfg.Queues = []string{config.DefaultQueue}
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = defaultConcurrency()
	}
	if cfg.MaxConcurrency <= 0 {
		cfg.MaxConcurrency = config.DefaultMaxConcurrency
	}
	if cfg.Concurrency > cfg.MaxConcurrency {
		return nil, fmt.Errorf("worker: Concurrency %d passes MaxConcurrency %d", cfg.Concurrency, cfg.MaxConcurrency)
	}
	if cfg.PrefetchMultiplier == 0 {
		cfg.PrefetchMultiplier = config.DefaultPrefetchMultiplier
	}
	if cfg.Hostname == "" {
		cfg.Hostname = config.ExpandHostname(config.DefaultHostname)
	}
	if cfg.MaxHeldETA == 0 {
		cfg.MaxHeldETA = config.DefaultMaxHeldETA
	}
	if cfg.MaxPendingResults == 0 {
		cfg.MaxPendingResults = DefaultMaxPendingResults
	}
	if cfg.MaxHeldETABytes == 0 {
		cfg.MaxHeldETABytes = DefaultMaxHeldETABytes
	}
	if cfg.ETAHorizon == 0 {
		cfg.ETAHorizon = config.DefaultETAHorizon
	}
	if cfg.MaxRedeliveries == 0 {
		cfg.MaxRedeliveries = DefaultMaxRedeliveries
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	return assemble(cfg, log)
}

// assemble builds the parts of a worker for a checked cfg and wires them
// together.
func assemble(cfg Config, log *zap.Logger) (*Worker, error) {
	w := &Worker{
		cfg:    cfg,
		log:    log,
		decode: protocol.DecodeOptions{Accept: cfg.Accept, MaxBodySize: cfg.MaxBodySize, MaxValues: cfg.MaxBodyValues},
		pid:    os.Getpid(),
		ready:  make(chan struct{}),
		limits: newRateLimits(),
	}
	for _, name := range cfg.Registry.Names() {
		t, _ := cfg.Registry.Lookup(name)
		if t.Options.RateLimit != "" {
			if err := w.limits.set(name, t.Options.RateLimit); err != nil {
				return nil, fmt.Errorf("worker: task %q: %w", name, err)
			}
		}
	}
	w.base, w.cancelBase = context.WithCancel(context.Background())
	revoked := cfg.Revoked
	if revoked == nil {
		revoked = NewRevokedSet(0, 0)
	}
	prefetch := 0
	if cfg.PrefetchMultiplier > 0 {
		prefetch = cfg.Concurrency * cfg.PrefetchMultiplier
	}

	w.consumers = newConsumers(cfg.Broker, log, cfg.Queues, w.dispatch)
	w.hold = newHold(log, prefetch, cfg.MaxHeldETA, cfg.MaxHeldETABytes, cfg.ETAHorizon, cfg.Followups != nil, w.limits, w.decode,
		holdHooks{listed: w.announceReceived, due: w.due, ready: w.enqueue, back: w.handBack, invalid: w.rejectHeld})
	w.pool = newPool(cfg.Concurrency, func(j *job) { w.exec.execute(j); w.inflight.Done() }, w.handBack)
	w.pool.max = cfg.MaxConcurrency
	w.active = newActiveTasks(cfg.Hostname, w.pid)
	w.results = &resultWriter{backend: cfg.Backend, hostname: cfg.Hostname, pid: w.pid,
		extended: cfg.ResultExtended, log: log, stop: w.base.Done()}
	w.pending = newPendingResults(cfg.Backend, max(cfg.MaxPendingResults, 0), log)
	w.followups = &followupSender{f: cfg.Followups, log: log,
		errbacks: &inlineErrbacks{registry: cfg.Registry, hostname: cfg.Hostname, log: log}}
	w.events = newTaskEvents(cfg.Events)
	w.timeLimits = newTimeLimits(cfg.TimeLimit, cfg.SoftTimeLimit)
	w.revocation = &revocation{set: revoked, stamps: newRevokedStamps(DefaultRevokedStampsMax), hold: w.hold, active: w.active, results: w.results,
		followups: w.followups, events: w.events, counts: &w.counts, log: log}
	w.exec = &executor{log: log, base: w.base, acksLate: cfg.AcksLate, trackStarted: cfg.TrackStarted,
		maxRedeliveries: cfg.MaxRedeliveries, revocation: w.revocation, active: w.active,
		runner:  &runner{hostname: cfg.Hostname, log: log, base: w.base, limits: w.timeLimits, active: w.active},
		results: w.results, pending: w.pending, followups: w.followups, events: w.events, counts: &w.counts,
		release: w.pool.release}
	w.exec.chain = chain(cfg.Middleware, w.exec.runNext)
	w.exec.redeliveries, _ = cfg.Backend.(result.RedeliveryCounter)
	w.exec.finished = newFinishedIDs(config.DefaultRememberFinished)
	w.inspector = Inspector{pid: w.pid, active: w.active, pool: w.pool, hold: w.hold, consumers: w.consumers,
		counts: &w.counts, results: w.results, pending: w.pending}
	w.controls = Controls{registry: cfg.Registry, log: log, prefetchMultiplier: cfg.PrefetchMultiplier,
		limits: w.limits, timeLimits: w.timeLimits, pool: w.pool, hold: w.hold, consumers: w.consumers}
	return w, nil
}

// Hostname returns the worker's node name.
func (w *Worker) Hostname() string { return w.cfg.Hostname }

// Stats returns the worker's counters (as its Inspector does).
func (w *Worker) Stats() Stats { return w.inspector.Stats() }

// Inspector returns the worker's read-only view of what it holds and did.
func (w *Worker) Inspector() *Inspector { return &w.inspector }

// Controls returns what changes the worker while it runs.
func (w *Worker) Controls() *Controls { return &w.controls }

// Ready is closed once Run consumes and the pool runs.
func (w *Worker) Ready() <-chan struct{} { return w.ready }

// Registry returns the worker's task registry.
func (w *Worker) Registry() *Registry { return w.cfg.Registry }

// RevokedSet returns the set of revoked task ids.
func (w *Worker) RevokedSet() *RevokedSet { return w.revocation.set }

// Revoke adds ids to the revoked set: a task with one of these ids is not
// run when it is received later, and one waiting in the worker (held for
// its ETA, waiting for its rate limit, or queued) is discarded as REVOKED
// instead of running. With terminate, the contexts of running tasks with
// these ids are cancelled (cause ErrTerminated); Go cannot stop a goroutine,
// so a task that ignores its context runs on, but whatever it returns is
// dropped and REVOKED is stored when it ends. Revoke returns the ids of
// the running tasks it terminated.
func (w *Worker) Revoke(ids []string, terminate bool, signal string) []string {
	return w.revocation.revoke(ids, terminate, signal)
}

// Run consumes and runs tasks until ctx is done, then shuts down warmly: it
// stops consuming, lets running tasks finish (and acknowledges them), and
// returns prefetched and held messages that never started to the queue.
// Terminate turns a warm shutdown into a cold one.
//
// Run may be called once. It returns ErrConsumerClosed when the broker
// stopped delivering without being asked to.
func (w *Worker) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	prefetch := w.hold.prefetchCount()
	cons, err := w.cfg.Broker.Consume(ctx, w.cfg.Queues, prefetch)
	if err != nil {
		return fmt.Errorf("worker: consume: %w", err)
	}
	w.hold.start(cons)
	w.consumers.start(cons)
	w.pool.start()
	go w.pending.run()
	// Celery's line, which log scrapers and supervisors wait for.
	w.log.Info(w.cfg.Hostname+" ready.", zap.Strings("queues", w.cfg.Queues),
		zap.Int("concurrency", w.pool.concurrency()), zap.Int("prefetch", prefetch))
	close(w.ready)

	dispatchDone := make(chan struct{})
	go func() {
		defer close(dispatchDone)
		w.dispatch(cons.Deliveries())
	}()

	var runErr error
	select {
	case <-ctx.Done():
	case <-dispatchDone:
		w.log.Error("the broker stopped delivering messages; shutting down")
		runErr = ErrConsumerClosed
	}
	w.shutdown(cons, dispatchDone)
	return runErr
}

// Errors of New and Run.
var (
	// ErrNoFollowups: Config has no Followups and does not say
	// DisableFollowups.
	ErrNoFollowups = errors.New("worker: Config.Followups is required (retries, callbacks and chords are published through it); set DisableFollowups to run without")
	// ErrAlreadyRun: Run was called a second time.
	ErrAlreadyRun = errors.New("worker: Run called twice")
	// ErrConsumerClosed: the consumer's deliveries ended without a
	// shutdown being asked for (the broker connection was closed for good).
	ErrConsumerClosed = errors.New("worker: the consumer stopped delivering messages")
)

// dispatch receives deliveries until they end; once a shutdown began,
// they go back to their queue.
func (w *Worker) dispatch(deliveries <-chan Delivery) {
	for d := range deliveries {
		if w.stopping.Load() {
			requeue(w.log, d)
			continue
		}
		w.receive(d)
	}
}

// shutdown stops consuming, returns what did not start to the queue and
// waits for the running tasks (Celery's warm shutdown), unless Terminate
// makes it cold.
func (w *Worker) shutdown(cons Consumer, dispatchDone <-chan struct{}) {
	w.log.Info("worker: Warm shutdown")
	w.stopping.Store(true)
	w.consumers.stop()
	w.pool.stop()
	// Every job still waiting for its ETA or its rate limit goes back to
	// the queue.
	held := w.hold.close()

	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := cons.Cancel(cctx); err != nil {
		// Without a confirmed cancellation (the broker is gone), closing
		// the consumer ends the deliveries; the broker requeues whatever
		// was not acknowledged.
		w.log.Warn("cancel consumer", zap.Error(err))
		if err := cons.Close(); err != nil {
			w.log.Warn("close consumer", zap.Error(err))
		}
	}
	w.consumers.cancelAdded(cctx)
	cancel()
	// The deliveries channel closes after the cancellation; whatever was
	// still in it is requeued by the dispatch loop.
	select {
	case <-dispatchDone:
	case <-w.base.Done():
	}
	for _, j := range held {
		w.handBack(j)
	}
	for _, j := range w.pool.close() {
		w.handBack(j)
	}
	done := make(chan struct{})
	go func() { w.pool.wait(); w.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-w.base.Done():
		w.log.Warn("worker: Cold shutdown: running tasks abandoned")
	}
	if err := cons.Close(); err != nil {
		w.log.Warn("close consumer", zap.Error(err))
	}
	w.consumers.closeAdded()
	w.pending.close()
	w.cancelBase()
}

// Terminate makes a shutdown cold: running tasks' contexts are cancelled
// and Run returns without waiting for them. What a cancelled acks_late
// task returns is dropped and its message returns to the queue; a task
// acknowledged early has FAILURE stored with WorkerLostError, if it
// returns before the process exits.
func (w *Worker) Terminate() { w.cancelBase() }

// receive decodes one delivery and routes it: reject, revoke, hold for its
// ETA, wait for its rate limit, or queue it to run.
func (w *Worker) receive(d Delivery) {
	w.counts.received.Add(1)
	raw := d.Raw()
	msg, err := protocol.Decode(raw, w.decode)
	if err != nil {
		w.rejectInvalid(d, raw, err)
		return
	}
	task, err := w.cfg.Registry.Lookup(msg.Task)
	if err != nil {
		w.counts.rejected.Add(1)
		w.log.Error("Received unregistered task of type '"+truncate(msg.Task, 200)+"'.",
			zap.String("id", msg.ID), zap.String("reason", "not-registered"))
		w.results.storeFailure(context.Background(), msg, notRegistered(msg.Task), "", nil)
		if w.events.on() {
			w.events.emit(&TaskEvent{Type: EventTaskFailed, Message: msg, Exception: notRegistered(msg.Task)})
		}
		if err := d.Reject(false); err != nil {
			w.log.Warn("reject", zap.Error(err))
		}
		return
	}
	j := &job{d: d, msg: msg, task: task, received: time.Now()}
	if ce := w.log.Check(zap.InfoLevel, ""); ce != nil {
		ce.Message = "Task " + msg.Name() + "[" + msg.ID + "] received"
		ce.Write()
	}
	if w.revocation.discardIfExpired(j) || w.revocation.discardIfRevoked(j) {
		return
	}
	w.inflight.Add(1)
	if msg.ETA != nil {
		if delay := time.Until(*msg.ETA); delay > 0 {
			w.hold.eta(j, delay, true)
			return
		}
	}
	w.announceReceived(j)
	w.schedule(j)
}

// announceReceived sends task-received for j.
func (w *Worker) announceReceived(j *job) {
	if w.events.on() {
		w.events.emit(&TaskEvent{Type: EventTaskReceived, Message: j.msg, Time: j.received, Queue: queueOf(j)})
	}
}

// due continues with j once its ETA came: it runs (after its rate limit),
// or, at the ETA horizon, it is published again and acknowledged.
func (w *Worker) due(j *job, horizon bool) {
	if w.revocation.discardIfRevoked(j) {
		w.inflight.Done()
		return
	}
	if horizon {
		if err := w.cfg.Followups.Republish(context.Background(), j.msg, j.d.Raw()); err != nil {
			w.log.Warn("republish of a far ETA failed; keeping it held", zap.String("id", j.msg.ID), zap.Error(err))
			j.keepHeld = true
			w.hold.eta(j, time.Until(*j.msg.ETA), false)
			return
		}
		j.ack(w.log)
		w.inflight.Done()
		return
	}
	w.schedule(j)
}

// schedule queues j, after its task's rate limit allows it.
func (w *Worker) schedule(j *job) {
	if w.revocation.discardIfRevoked(j) {
		w.inflight.Done()
		return
	}
	if !w.hold.throttle(j) {
		w.enqueue(j)
	}
}

// enqueue hands j to the pool, or back to its queue once the pool is
// closed.
func (w *Worker) enqueue(j *job) {
	if !w.pool.push(j) {
		w.handBack(j)
	}
}

// handBack returns a job that will not run to its queue.
func (w *Worker) handBack(j *job) {
	requeue(w.log, j.d)
	w.inflight.Done()
}

// rejectHeld rejects a held message that no longer decodes when due.
func (w *Worker) rejectHeld(d Delivery, raw *protocol.RawMessage, err error) {
	w.rejectInvalid(d, raw, err)
	w.inflight.Done()
}

// rejectInvalid handles a message that cannot become a task: one ERROR
// line with the reason, FAILURE stored when the id is known, reject without
// requeue (dead-lettered when the queue has a DLX).
func (w *Worker) rejectInvalid(d Delivery, raw *protocol.RawMessage, err error) {
	w.counts.invalid.Add(1)
	var de *protocol.DecodeError
	reason := "invalid"
	id, name := "", ""
	if errors.As(err, &de) {
		reason, id, name = de.Reason, de.ID, de.Task
	}
	w.log.Error("Received invalid task message: "+err.Error(),
		zap.String("reason", reason), zap.String("id", truncate(id, 255)), zap.String("task", truncate(name, 200)),
		zap.String("content_type", raw.ContentType), zap.ByteString("body", truncateBytes(raw.Body, 1024)))
	if id != "" && protocol.CheckID(id) == nil { // never a result under an invalid key
		var exc *protocol.Exception
		if errors.Is(err, protocol.ErrContentDisallowed) {
			exc = contentDisallowed(err.Error())
		} else {
			exc = invalidTask(err.Error())
		}
		m := &protocol.Message{ID: id, Task: name, ReplyTo: raw.ReplyTo, CorrelationID: raw.CorrelationID}
		w.results.storeFailure(context.Background(), m, exc, "", nil)
	}
	if err := d.Reject(false); err != nil {
		w.log.Warn("reject", zap.Error(err))
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func truncateBytes(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	return b[:n]
}

// Package metrics exposes a worker to Prometheus and to Kubernetes probes:
// /metrics (tasks by name and final state, task runtimes, queue waits and
// end-to-end latencies, received, active, reserved and held counts, by
// queue too, free pool slots, broker reconnects, stale acknowledgements,
// result-store retries, events dropped), /healthz (the process answers)
// and /readyz (the worker consumes and its broker and backend answer).
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/gworker/gworker/internal/version"
	"github.com/gworker/gworker/worker"
)

// Namespace prefixes every metric name.
const Namespace = "gworker"

// DefaultRuntimeBuckets are the task runtime histogram buckets, in seconds.
var DefaultRuntimeBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

// DefaultLatencyBuckets are the buckets of the queue wait and end-to-end
// latency histograms, in seconds: from a message taken at once to one
// that waited an hour behind a backlog.
var DefaultLatencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}

// Config configures the metrics. Every source is optional.
type Config struct {
	// Worker is read at each scrape for its counts.
	Worker *worker.Worker
	// Next receives the task events after they are counted (the event
	// dispatcher), so that Metrics can be the worker's only event sink.
	Next worker.EventSink
	// Counters read at each scrape.
	BrokerReconnects func() uint64
	StaleAcks        func() int64
	EventsDropped    func() int64
	// Ready reports whether the worker can take tasks: nil when it
	// consumes and its broker and result backend answer.
	Ready func(ctx context.Context) error
	// ReadyTimeout bounds one readiness check; default 5 s.
	ReadyTimeout time.Duration
	// ReadyCache is how long a readiness check's answer is reused, so
	// that probes in a tight loop cost the broker one check a period;
	// default DefaultReadyCache.
	ReadyCache time.Duration
	// RuntimeBuckets are the runtime histogram buckets in seconds;
	// default DefaultRuntimeBuckets.
	RuntimeBuckets []float64
	// LatencyBuckets are the queue wait and latency histogram buckets in
	// seconds; default DefaultLatencyBuckets.
	LatencyBuckets []float64
	Logger         *zap.Logger
}

// Metrics counts task events and serves the metrics and probe endpoints.
// It is a worker.EventSink.
type Metrics struct {
	cfg      Config
	reg      *prometheus.Registry
	tasks    *prometheus.CounterVec
	runtime  *prometheus.HistogramVec
	received *prometheus.CounterVec
	wait     *prometheus.HistogramVec
	latency  *prometheus.HistogramVec
	worker   workerRef

	// draining: a shutdown began; /readyz answers 503 from then on.
	draining atomic.Bool

	// readyMu serializes readiness checks; readyAt and readyErr are
	// the last one's time and answer.
	readyMu  sync.Mutex
	readyAt  time.Time
	readyErr error
}

// Defaults of the probe server.
const (
	// DefaultReadyCache is Config.ReadyCache's default.
	DefaultReadyCache = time.Second
	// ServerIdleTimeout closes keep-alive connections left idle, and
	// ServerReadTimeout and ServerWriteTimeout bound one request, so
	// that idle or slow clients cannot hold connections for ever.
	ServerIdleTimeout  = 60 * time.Second
	ServerReadTimeout  = 10 * time.Second
	ServerWriteTimeout = 30 * time.Second
)

// workerRef lets the worker be set after the sink was given to it.
type workerRef struct{ p atomic.Pointer[worker.Worker] }

func (r *workerRef) get() *worker.Worker { return r.p.Load() }

// New builds the metrics on a registry of their own.
func New(cfg Config) *Metrics {
	if cfg.RuntimeBuckets == nil {
		cfg.RuntimeBuckets = DefaultRuntimeBuckets
	}
	if cfg.LatencyBuckets == nil {
		cfg.LatencyBuckets = DefaultLatencyBuckets
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 5 * time.Second
	}
	if cfg.ReadyCache <= 0 {
		cfg.ReadyCache = DefaultReadyCache
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	m := &Metrics{cfg: cfg, reg: prometheus.NewRegistry()}
	m.worker.p.Store(cfg.Worker)
	m.tasks = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "tasks_total",
		Help: "Tasks by name and how they ended (SUCCESS, FAILURE, RETRY, REVOKED, REJECTED)."}, []string{"task", "state"})
	m.runtime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "task_runtime_seconds",
		Help: "Runtime of tasks that ran, by how they ended (SUCCESS or FAILURE).", Buckets: cfg.RuntimeBuckets}, []string{"task", "state"})
	m.received = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "tasks_received_total",
		Help: "Task messages received, by task."}, []string{"task"})
	m.wait = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "task_queue_wait_seconds",
		Help:    "Time from a task's publish (the AMQP timestamp property when its producer set one, else its receipt by the worker) or its ETA, when later, to its start, by queue.",
		Buckets: cfg.LatencyBuckets}, []string{"queue"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "task_latency_seconds",
		Help:    "Time from a task's publish (or receipt, as for the queue wait) or its ETA, when later, to its end, by task and queue.",
		Buckets: cfg.LatencyBuckets}, []string{"task", "queue"})
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "build_info",
		Help:        "Always 1; the labels say which gworker and Go built this worker.",
		ConstLabels: prometheus.Labels{"version": version.Version, "goversion": runtime.Version()}})
	buildInfo.Set(1)
	m.reg.MustRegister(m.tasks, m.runtime, m.received, m.wait, m.latency, buildInfo, &loadCollector{m: m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gauge := func(name, help string, f func(w *worker.Worker) float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, func() float64 {
			if w := m.worker.get(); w != nil {
				return f(w)
			}
			return 0
		}))
	}
	counter := func(name, help string, f func() float64) {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, f))
	}
	gauge("tasks_active", "Tasks running now.", func(w *worker.Worker) float64 { return float64(w.Inspector().ActiveCount()) })
	gauge("tasks_reserved", "Tasks received and waiting for a pool slot or their rate limit.", func(w *worker.Worker) float64 { return float64(len(w.Inspector().Reserved())) })
	gauge("tasks_held_eta", "Tasks held until their ETA or countdown.", func(w *worker.Worker) float64 { return float64(w.Inspector().ScheduledCount()) })
	gauge("concurrency", "Pool size.", func(w *worker.Worker) float64 { return float64(w.Inspector().Concurrency()) })
	gauge("pool_free_slots", "Pool slots no task runs in.", func(w *worker.Worker) float64 { return float64(w.Inspector().FreeSlots()) })
	gauge("pending_results", "Results waiting in memory for the result store.", func(w *worker.Worker) float64 { return float64(w.Stats().PendingResults) })
	counter("result_store_retries_total", "Result writes tried again after the result store failed.", func() float64 {
		if w := m.worker.get(); w != nil {
			return float64(w.Stats().StoreRetries)
		}
		return 0
	})
	if f := cfg.BrokerReconnects; f != nil {
		counter("broker_reconnects_total", "Times the broker connection was re-established.", func() float64 { return float64(f()) })
	}
	if f := cfg.StaleAcks; f != nil {
		counter("stale_acks_dropped_total", "Acknowledgements dropped because their channel was gone (the broker redelivers).", func() float64 { return float64(f()) })
	}
	if f := cfg.EventsDropped; f != nil {
		counter("events_dropped_total", "Task events dropped because the event queue was full.", func() float64 { return float64(f()) })
	}
	return m
}

// SetWorker gives the metrics the worker to read, when it was built after
// them (the metrics being its event sink).
func (m *Metrics) SetWorker(w *worker.Worker) { m.worker.p.Store(w) }

// Registry returns the Prometheus registry, to add collectors to.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// UnregisteredTask is the task label of every task name the worker has
// no function for: anyone on the broker can send any name, and a label
// value per name would grow the series without bound.
const UnregisteredTask = "unregistered"

// taskLabel is the task label of name: itself when the worker has it
// registered, else UnregisteredTask.
func (m *Metrics) taskLabel(name string) string {
	if w := m.worker.get(); w != nil {
		if _, err := w.Registry().Lookup(name); err == nil {
			return name
		}
	}
	return UnregisteredTask
}

// OtherQueue is the queue label of a message from a queue the worker does
// not consume (any more), so that the label takes consumed queues only.
const OtherQueue = "other"

// queueLabel is the queue label of q: itself when the worker consumes it.
func (m *Metrics) queueLabel(q string) string {
	if w := m.worker.get(); w != nil && w.Inspector().Consumes(q) {
		return q
	}
	return OtherQueue
}

// since is how long ago, at end, a task's message was published (else
// received), or its ETA came when that is later.
func since(ev *worker.TaskEvent, end time.Time) (time.Duration, bool) {
	from := ev.Received
	if !ev.Published.IsZero() && ev.Published.Before(from) {
		from = ev.Published
	}
	if eta := ev.Message.ETA; eta != nil && eta.After(from) {
		from = *eta
	}
	if from.IsZero() {
		return 0, false
	}
	return max(end.Sub(from), 0), true
}

// TaskEvent counts final states, runtimes, queue waits and latencies,
// then passes ev on.
func (m *Metrics) TaskEvent(ev *worker.TaskEvent) {
	state := ""
	switch ev.Type {
	case worker.EventTaskReceived:
		m.received.WithLabelValues(m.taskLabel(ev.Message.Task)).Inc()
	case worker.EventTaskStarted:
		if d, ok := since(ev, ev.Time); ok {
			m.wait.WithLabelValues(m.queueLabel(ev.Queue)).Observe(d.Seconds())
		}
	case worker.EventTaskSucceeded:
		state = "SUCCESS"
		m.runtime.WithLabelValues(m.taskLabel(ev.Message.Task), state).Observe(ev.Runtime.Seconds())
		m.observeLatency(ev)
	case worker.EventTaskFailed:
		state = "FAILURE"
		if ev.Runtime > 0 { // it ran: not a message refused before running
			m.runtime.WithLabelValues(m.taskLabel(ev.Message.Task), state).Observe(ev.Runtime.Seconds())
			m.observeLatency(ev)
		}
	case worker.EventTaskRetried:
		state = "RETRY"
	case worker.EventTaskRevoked:
		state = "REVOKED"
	case worker.EventTaskRejected:
		state = "REJECTED"
	}
	if state != "" {
		m.tasks.WithLabelValues(m.taskLabel(ev.Message.Task), state).Inc()
	}
	if m.cfg.Next != nil {
		m.cfg.Next.TaskEvent(ev)
	}
}

func (m *Metrics) observeLatency(ev *worker.TaskEvent) {
	if d, ok := since(ev, ev.Time); ok {
		m.latency.WithLabelValues(m.taskLabel(ev.Message.Task), m.queueLabel(ev.Queue)).Observe(d.Seconds())
	}
}

// loadCollector reports the worker's load by queue at each scrape.
type loadCollector struct{ m *Metrics }

var queueTasksDesc = prometheus.NewDesc(Namespace+"_queue_tasks",
	"Tasks the worker holds, by the queue they came from and where they are: reserved (prefetched, waiting for a pool slot or their rate limit), held (until their ETA) or active (running).",
	[]string{"queue", "state"}, nil)

func (c *loadCollector) Describe(ch chan<- *prometheus.Desc) { ch <- queueTasksDesc }

func (c *loadCollector) Collect(ch chan<- prometheus.Metric) {
	w := c.m.worker.get()
	if w == nil {
		return
	}
	in := w.Inspector()
	load := in.Load()
	for _, q := range in.Queues() {
		load[q] = load[q] // every consumed queue, also an idle one
	}
	byLabel := map[string]worker.QueueLoad{}
	for q, l := range load {
		label := c.m.queueLabel(q)
		t := byLabel[label]
		t.Reserved += l.Reserved
		t.Held += l.Held
		t.Active += l.Active
		byLabel[label] = t
	}
	for q, l := range byLabel {
		ch <- prometheus.MustNewConstMetric(queueTasksDesc, prometheus.GaugeValue, float64(l.Reserved), q, "reserved")
		ch <- prometheus.MustNewConstMetric(queueTasksDesc, prometheus.GaugeValue, float64(l.Held), q, "held")
		ch <- prometheus.MustNewConstMetric(queueTasksDesc, prometheus.GaugeValue, float64(l.Active), q, "active")
	}
}

// Handler serves /metrics, /healthz and /readyz.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := m.ready(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// ErrNotConsuming is the readiness error of a worker not consuming yet (or
// any more).
var ErrNotConsuming = errors.New("the worker is not consuming")

// ErrDraining is the readiness error of a worker whose shutdown began: it
// takes no new tasks while the running ones finish.
var ErrDraining = errors.New("the worker is shutting down")

// Drain makes /readyz answer 503 (ErrDraining) from now on, while /healthz
// and /metrics go on answering: a warm shutdown takes the node out of
// service without making it look unsound.
func (m *Metrics) Drain() { m.draining.Store(true) }

func (m *Metrics) ready(ctx context.Context) error {
	if m.draining.Load() {
		return ErrDraining
	}
	w := m.worker.get()
	if w == nil {
		return ErrNotConsuming
	}
	select {
	case <-w.Ready():
	default:
		return ErrNotConsuming
	}
	if m.cfg.Ready == nil {
		return nil
	}
	m.readyMu.Lock()
	defer m.readyMu.Unlock()
	if !m.readyAt.IsZero() && time.Since(m.readyAt) < m.cfg.ReadyCache {
		return m.readyErr
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.ReadyTimeout)
	defer cancel()
	m.readyErr = m.cfg.Ready(ctx)
	m.readyAt = time.Now()
	return m.readyErr
}

// Serve listens on addr and serves Handler until ctx ends. It returns once
// the listener is open (errors after that are logged), or the listen error.
func (m *Metrics) Serve(ctx context.Context, addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: ServerReadTimeout, ReadTimeout: ServerReadTimeout,
		WriteTimeout: ServerWriteTimeout, IdleTimeout: ServerIdleTimeout, MaxHeaderBytes: 1 << 16}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.cfg.Logger.Error("metrics server stopped", zap.Error(err))
		}
	}()
	return ln.Addr(), nil
}

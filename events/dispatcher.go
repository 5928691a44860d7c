// Package events publishes Celery events: worker-online, worker-heartbeat
// and worker-offline, and the task events of a worker (task-received,
// task-started, task-succeeded, ...), in the form Celery 5.2.6 sends them,
// so that `celery events`, Flower and other receivers see the node.
//
// Publishing never blocks the worker: task events go through a bounded
// queue to one publishing goroutine, which sends them in batches (a JSON
// list with routing key task.multi, as a Celery worker does); when the
// queue is full events are dropped and counted.
package events

import (
	"context"
	"errors"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/config"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

// Defaults of Config.
const (
	DefaultExchange          = "celeryev"
	DefaultHeartbeatInterval = config.DefaultHeartbeatInterval
	DefaultQueueSize         = 8192
	DefaultBatchSize         = 100
	DefaultFlushInterval     = 5 * time.Millisecond
	DefaultPublishTimeout    = 5 * time.Second
	DefaultSoftwareIdent     = "gworker"
)

// Publisher sends one message to an exchange. amqptransport.Broker is one.
type Publisher interface {
	Publish(ctx context.Context, exchange, routingKey string, msg *protocol.RawMessage) error
}

// ExchangeDeclarer declares the events exchange before the first event. A
// Publisher that also implements it is asked to declare Config.Exchange
// (topic, durable, as Celery does).
type ExchangeDeclarer interface {
	DeclareExchange(ctx context.Context, name, kind string, durable bool) error
}

// WorkerState reports what the heartbeats carry.
type WorkerState interface {
	// ActiveCount is the number of running tasks.
	ActiveCount() int
	// Processed is the number of tasks started since the worker started.
	Processed() int64
}

// Config configures a Dispatcher. Publisher and Hostname are required.
type Config struct {
	Publisher Publisher
	// Hostname is the node name, e.g. "celery@host".
	Hostname string
	// Exchange is the events exchange; default "celeryev".
	Exchange string
	// HeartbeatInterval is the heartbeat period (freq); default 2 s.
	// Negative sends no heartbeats (--without-heartbeat); worker-online
	// and worker-offline are still sent.
	HeartbeatInterval time.Duration
	// TaskEvents turns task events on at start (-E); EnableTaskEvents
	// changes it at run time.
	TaskEvents bool
	// QueueSize bounds the task events waiting to be published; default
	// 8192. Beyond it events are dropped and counted.
	QueueSize int
	// BatchSize is the most task events sent in one message; default 100.
	BatchSize int
	// FlushInterval is how long task events may wait for more to share
	// their message; default 5 ms. Batching is what keeps -E cheap: one
	// publish carries the events of many tasks.
	FlushInterval time.Duration
	// PublishTimeout bounds one publish; default 5 s.
	PublishTimeout time.Duration
	// State gives the heartbeats their active and processed counts; nil
	// sends zeros.
	State WorkerState
	// Clock is the node's Lamport clock; nil uses one of its own.
	Clock *Clock
	// SoftwareIdent and SoftwareVersion are sw_ident and sw_ver; defaults
	// "gworker" and "dev".
	SoftwareIdent, SoftwareVersion string
	// PID is the pid events carry; default the process id.
	PID int
	// Logger receives the dispatcher's log lines; nil logs nothing.
	Logger *zap.Logger
}

// Dispatcher publishes a node's events. Create it with New, start it with
// Start and stop it with Stop. It is a worker.EventSink.
type Dispatcher struct {
	cfg   Config
	log   *zap.Logger
	clock *Clock

	taskEvents atomic.Bool
	qmu        sync.Mutex
	pending    [][]byte      // encoded task events waiting to be published
	notify     chan struct{} // signalled when pending stops being empty
	dropped    atomic.Int64
	sent       atomic.Int64
	failed     atomic.Int64
	dropOnce   sync.Once
	failOnce   sync.Once

	mu      sync.Mutex
	started bool
	stop    chan struct{}
	wg      sync.WaitGroup
}

// ErrConfig is wrapped by New's errors.
var ErrConfig = errors.New("events: invalid config")

// New checks cfg and returns a dispatcher.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Publisher == nil || cfg.Hostname == "" {
		return nil, errors.Join(ErrConfig, errors.New("Publisher and Hostname are required"))
	}
	if cfg.Exchange == "" {
		cfg.Exchange = DefaultExchange
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = DefaultPublishTimeout
	}
	if cfg.SoftwareIdent == "" {
		cfg.SoftwareIdent = DefaultSoftwareIdent
	}
	if cfg.SoftwareVersion == "" {
		cfg.SoftwareVersion = "dev"
	}
	if cfg.PID == 0 {
		cfg.PID = os.Getpid()
	}
	d := &Dispatcher{cfg: cfg, log: cfg.Logger, clock: cfg.Clock, notify: make(chan struct{}, 1)}
	if d.log == nil {
		d.log = zap.NewNop()
	}
	if d.clock == nil {
		d.clock = &Clock{}
	}
	d.taskEvents.Store(cfg.TaskEvents)
	return d, nil
}

// Clock returns the dispatcher's Lamport clock.
func (d *Dispatcher) Clock() *Clock { return d.clock }

// Dropped returns how many task events were dropped because the queue was
// full.
func (d *Dispatcher) Dropped() int64 { return d.dropped.Load() }

// Sent returns how many events were published.
func (d *Dispatcher) Sent() int64 { return d.sent.Load() }

// TaskEventsEnabled reports whether task events are sent.
func (d *Dispatcher) TaskEventsEnabled() bool { return d.taskEvents.Load() }

// EnableTaskEvents turns task events on or off and returns the previous
// setting (Celery's enable_events and disable_events).
func (d *Dispatcher) EnableTaskEvents(on bool) bool { return d.taskEvents.Swap(on) }

// Start declares the exchange when the publisher can, sends worker-online
// and starts the heartbeats and the task event publisher.
func (d *Dispatcher) Start(ctx context.Context) error {
	d.mu.Lock()
	if d.started {
		d.mu.Unlock()
		return errors.New("events: Start called twice")
	}
	d.started = true
	stop := make(chan struct{})
	d.stop = stop
	d.mu.Unlock()
	if dec, ok := d.cfg.Publisher.(ExchangeDeclarer); ok {
		if err := dec.DeclareExchange(ctx, d.cfg.Exchange, "topic", true); err != nil {
			return err
		}
	}
	d.sendWorker(ctx, "worker-online")
	d.wg.Add(1)
	go d.publishLoop(stop)
	if d.cfg.HeartbeatInterval > 0 {
		d.wg.Add(1)
		go d.heartbeatLoop(stop)
	}
	return nil
}

// Stop stops the heartbeats, publishes the task events still queued (until
// ctx ends) and sends worker-offline.
func (d *Dispatcher) Stop(ctx context.Context) {
	d.mu.Lock()
	if !d.started || d.stop == nil {
		d.mu.Unlock()
		return
	}
	close(d.stop)
	d.stop = nil
	d.mu.Unlock()
	d.wg.Wait()
	d.drain(ctx)
	d.sendWorker(ctx, "worker-offline")
}

// Heartbeat sends a worker-heartbeat now (Celery's heartbeat command).
func (d *Dispatcher) Heartbeat(ctx context.Context) { d.sendWorker(ctx, "worker-heartbeat") }

func (d *Dispatcher) heartbeatLoop(stop <-chan struct{}) {
	defer d.wg.Done()
	t := time.NewTicker(d.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), d.cfg.PublishTimeout)
			d.sendWorker(ctx, "worker-heartbeat")
			cancel()
		}
	}
}

// header starts an event with Celery's standard fields.
func (d *Dispatcher) header(n int, t time.Time) protocol.Dict {
	ev := make(protocol.Dict, 0, n+6)
	return append(ev,
		protocol.Item{Key: "hostname", Value: d.cfg.Hostname},
		protocol.Item{Key: "utcoffset", Value: int64(UTCOffset(t))},
		protocol.Item{Key: "pid", Value: int64(d.cfg.PID)},
		protocol.Item{Key: "clock", Value: d.clock.Forward()},
	)
}

func finish(ev protocol.Dict, typ string, t time.Time) protocol.Dict {
	return append(ev,
		protocol.Item{Key: "timestamp", Value: Timestamp(t)},
		protocol.Item{Key: "type", Value: typ},
	)
}

// Timestamp is Celery's event timestamp: epoch seconds as a float.
func Timestamp(t time.Time) float64 { return float64(t.UnixMicro()) / 1e6 }

// UTCOffset is Celery's utcoffset: hours west of UTC, floor-divided (UTC+2
// gives -2, UTC+5:30 gives -6).
func UTCOffset(t time.Time) int {
	_, east := t.Zone()
	west := -east
	q := west / 3600
	if west%3600 != 0 && west < 0 {
		q--
	}
	return q
}

// WorkerEvent builds a worker-online, worker-heartbeat or worker-offline
// event.
func (d *Dispatcher) WorkerEvent(typ string) protocol.Dict {
	active, processed := int64(0), int64(0)
	if d.cfg.State != nil {
		active, processed = int64(d.cfg.State.ActiveCount()), d.cfg.State.Processed()
	}
	freq := d.cfg.HeartbeatInterval.Seconds()
	if freq < 0 {
		freq = DefaultHeartbeatInterval.Seconds()
	}
	now := time.Now()
	ev := d.header(7, now)
	ev = append(ev,
		protocol.Item{Key: "freq", Value: freq},
		protocol.Item{Key: "active", Value: active},
		protocol.Item{Key: "processed", Value: processed},
		protocol.Item{Key: "loadavg", Value: loadAvg()},
		protocol.Item{Key: "sw_ident", Value: d.cfg.SoftwareIdent},
		protocol.Item{Key: "sw_ver", Value: d.cfg.SoftwareVersion},
		protocol.Item{Key: "sw_sys", Value: swSys()},
	)
	return finish(ev, typ, now)
}

func swSys() string {
	s := runtime.GOOS
	if s == "" {
		return ""
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func (d *Dispatcher) sendWorker(ctx context.Context, typ string) {
	body, err := protocol.MarshalJSON(d.WorkerEvent(typ))
	if err != nil {
		d.log.Error("events: encode "+typ, zap.Error(err))
		return
	}
	d.publish(ctx, strings.ReplaceAll(typ, "-", "."), body)
}

func (d *Dispatcher) publish(ctx context.Context, key string, body []byte) {
	msg := &protocol.RawMessage{
		Headers:         map[string]any{"hostname": d.cfg.Hostname},
		ContentType:     protocol.ContentTypeJSON,
		ContentEncoding: "utf-8",
		DeliveryMode:    1,
		Body:            body,
	}
	if err := d.cfg.Publisher.Publish(ctx, d.cfg.Exchange, key, msg); err != nil {
		d.failed.Add(1)
		// Logged once at WARNING, then at DEBUG: a dead broker must not
		// flood the log with one line per event.
		lvl := zap.DebugLevel
		d.failOnce.Do(func() { lvl = zap.WarnLevel })
		d.log.Check(lvl, "events: publish failed; events are lost until the broker is back").Write(zap.String("routing_key", key), zap.Error(err))
		return
	}
	d.sent.Add(1)
}

// TaskEvent queues a task event when task events are on; it never blocks.
func (d *Dispatcher) TaskEvent(ev *worker.TaskEvent) {
	if !d.taskEvents.Load() {
		return
	}
	body, err := protocol.MarshalJSON(d.taskEventDict(ev))
	if err != nil {
		d.log.Debug("events: encode", zap.String("type", ev.Type), zap.Error(err))
		return
	}
	d.qmu.Lock()
	if len(d.pending) >= d.cfg.QueueSize {
		d.qmu.Unlock()
		if d.dropped.Add(1) == 1 {
			d.dropOnce.Do(func() {
				d.log.Warn("events: the event queue is full; task events are dropped", zap.Int("queue_size", d.cfg.QueueSize))
			})
		}
		return
	}
	d.pending = append(d.pending, body)
	first := len(d.pending) == 1
	d.qmu.Unlock()
	if first {
		// Only the first event of a batch wakes the publisher: the
		// others join it while it lingers.
		select {
		case d.notify <- struct{}{}:
		default:
		}
	}
}

// take returns the queued events and empties the queue.
func (d *Dispatcher) take() [][]byte {
	d.qmu.Lock()
	defer d.qmu.Unlock()
	out := d.pending
	d.pending = nil
	return out
}

// taskEventDict builds a task event with Celery's fields and order.
func (d *Dispatcher) taskEventDict(ev *worker.TaskEvent) protocol.Dict {
	m := ev.Message
	t := ev.Time
	if t.IsZero() {
		t = time.Now()
	}
	out := d.header(10, t)
	out = append(out, protocol.Item{Key: "uuid", Value: m.ID})
	switch ev.Type {
	case worker.EventTaskReceived:
		out = append(out,
			protocol.Item{Key: "name", Value: m.Task},
			protocol.Item{Key: "args", Value: argsRepr(m)},
			protocol.Item{Key: "kwargs", Value: kwargsRepr(m)},
			protocol.Item{Key: "root_id", Value: nullable(m.RootID)},
			protocol.Item{Key: "parent_id", Value: nullable(m.ParentID)},
			protocol.Item{Key: "retries", Value: int64(m.Retries)},
			protocol.Item{Key: "eta", Value: timeOrNil(m.ETA)},
			protocol.Item{Key: "expires", Value: timeOrNil(m.Expires)},
		)
	case worker.EventTaskSucceeded:
		out = append(out,
			protocol.Item{Key: "result", Value: protocol.Repr(ev.Result)},
			protocol.Item{Key: "runtime", Value: ev.Runtime.Seconds()},
		)
	case worker.EventTaskFailed, worker.EventTaskRetried:
		exc, tb := "", ev.Traceback
		if ev.Exception != nil {
			exc = ev.Exception.Error()
		}
		out = append(out,
			protocol.Item{Key: "exception", Value: exc},
			protocol.Item{Key: "traceback", Value: tb},
		)
	case worker.EventTaskRevoked:
		out = append(out,
			protocol.Item{Key: "terminated", Value: ev.Terminated},
			protocol.Item{Key: "signum", Value: signum(ev.Signal, ev.Terminated)},
			protocol.Item{Key: "expired", Value: ev.Expired},
		)
	case worker.EventTaskRejected:
		out = append(out, protocol.Item{Key: "requeue", Value: ev.Requeue})
	}
	return finish(out, ev.Type, t)
}

// argsRepr is the args repr Celery puts in task-received: the client's
// argsrepr header when present.
func argsRepr(m *protocol.Message) string {
	if s, ok := m.Headers["argsrepr"].(string); ok && s != "" {
		return s
	}
	return protocol.ArgsRepr(m.Args)
}

func kwargsRepr(m *protocol.Message) string {
	if s, ok := m.Headers["kwargsrepr"].(string); ok && s != "" {
		return s
	}
	return protocol.KwargsRepr(m.Kwargs)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func timeOrNil(t *time.Time) any {
	if t == nil {
		return nil
	}
	return protocol.FormatTime(*t)
}

var signals = map[string]int{"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGKILL": 9, "SIGUSR1": 10, "SIGUSR2": 12, "SIGTERM": 15}

// signum is what Celery's task-revoked carries: the terminating signal's
// number as a string, null when the task was not terminated.
func signum(sig string, terminated bool) any {
	if !terminated {
		return nil
	}
	name := strings.ToUpper(strings.TrimSpace(sig))
	if name == "" {
		name = "SIGTERM"
	}
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if n, ok := signals[name]; ok {
		return strconv.Itoa(n)
	}
	if _, err := strconv.Atoi(sig); err == nil {
		return sig
	}
	return name
}

func (d *Dispatcher) publishLoop(stop <-chan struct{}) {
	defer d.wg.Done()
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		select {
		case <-stop:
			return
		case <-d.notify:
		}
		linger.Reset(d.cfg.FlushInterval)
		select {
		case <-linger.C:
		case <-stop:
			linger.Stop()
		}
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.PublishTimeout)
		d.publishAll(ctx, d.take())
		cancel()
	}
}

// publishAll publishes events in messages of at most BatchSize.
func (d *Dispatcher) publishAll(ctx context.Context, events [][]byte) {
	for len(events) > 0 {
		n := min(len(events), d.cfg.BatchSize)
		d.publishBatch(ctx, events[:n])
		events = events[n:]
	}
}

// publishBatch sends events as one JSON list with routing key task.multi.
func (d *Dispatcher) publishBatch(ctx context.Context, batch [][]byte) {
	n := 2
	for _, b := range batch {
		n += len(b) + 2
	}
	body := make([]byte, 0, n)
	body = append(body, '[')
	for i, b := range batch {
		if i > 0 {
			body = append(body, ", "...)
		}
		body = append(body, b...)
	}
	body = append(body, ']')
	d.publish(ctx, "task.multi", body)
}

// drain publishes what is queued, until ctx ends.
func (d *Dispatcher) drain(ctx context.Context) {
	if ctx.Err() == nil {
		d.publishAll(ctx, d.take())
	}
}

// loadAvg reads the 1, 5 and 15 minute load averages, rounded up to two
// decimals as Celery does; zeros where they cannot be read.
func loadAvg() []any {
	out := []any{0.0, 0.0, 0.0}
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return out
	}
	f := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(f); i++ {
		if v, err := strconv.ParseFloat(f[i], 64); err == nil {
			out[i] = roundUp2(v)
		}
	}
	return out
}

func roundUp2(v float64) float64 { return math.Ceil(v*100) / 100 }

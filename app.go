// Package gworker is a Celery worker and client in Go: it runs registered Go
// functions for the task messages Python's Celery sends, stores their
// results where Python's AsyncResult reads them, and sends tasks, groups,
// chains and chords that Python workers (or other gworker nodes) run.
//
// An App holds the wiring: broker and result backend from URLs, the
// producer, what runs after a task (callbacks, chains, chords, retries)
// and the builtin tasks. A service embeds it in a few lines:
//
//	app := gworker.New(gworker.Config{})
//	app.MustRegister("tasks.double", double, gworker.Params("x"))
//	app.Main() // the whole gworker command line: worker, call, result
//
// or drives it from Go with Start and Stop. The packages below it
// (protocol, amqptransport, result, producer, canvas, worker) stay usable
// on their own.
package gworker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/transport"
	"github.com/gworker/gworker/worker"
)

// Defaults of Config, as Celery's.
const (
	// DefaultBrokerURL is used when neither Config, --broker nor
	// CELERY_BROKER_URL name a broker.
	DefaultBrokerURL = amqptransport.DefaultURL
	// DefaultQueue is the queue consumed and sent to when none is named
	// (task_default_queue).
	DefaultQueue = "celery"
	// DefaultPrefetchMultiplier: prefetch = concurrency × this
	// (worker_prefetch_multiplier).
	DefaultPrefetchMultiplier = 4
	// DefaultResultExpires is how long results are kept (result_expires).
	DefaultResultExpires = 24 * time.Hour
	// DefaultHostname is the node name pattern (celery worker -n).
	DefaultHostname = "celery@%h"
	// DefaultHeartbeatInterval is how often worker-heartbeat events are
	// sent (--heartbeat-interval).
	DefaultHeartbeatInterval = 2 * time.Second
	// DefaultLogLevel is the CLI's and the built logger's level.
	DefaultLogLevel = "INFO"
	// DefaultStopTimeout bounds how long Main's warm shutdown waits for
	// the broker to confirm the consumer's cancellation.
	DefaultStopTimeout = 5 * time.Second
)

// Config configures an App. The zero value is usable: the broker and the
// result backend then come from the command line (Main) or from
// CELERY_BROKER_URL and CELERY_RESULT_BACKEND.
type Config struct {
	// BrokerURL is the broker: amqp://user:pass@host:port/vhost (also
	// amqps:// and pyamqp://), redis://[:pass@]host:port/db (also
	// rediss://), or sentinel://host:26379;sentinel://host2:26379 with the
	// master_name transport option. Empty: --broker, CELERY_BROKER_URL,
	// then DefaultBrokerURL.
	BrokerURL string
	// BrokerTransportOptions are kombu's broker_transport_options for the
	// Redis broker (visibility_timeout, queue_order_strategy,
	// priority_steps, sep, global_keyprefix, socket_timeout, master_name,
	// ...), values as text; see redistransport.Config.
	BrokerTransportOptions map[string]string
	// ResultBackend is redis://[:password@]host:port/db, rediss://...,
	// rpc:// or disabled://. Empty: --result-backend,
	// CELERY_RESULT_BACKEND, else results are not stored.
	ResultBackend string
	// ResultExpires is how long stored results live; 0 means
	// DefaultResultExpires, a negative value keeps them forever.
	ResultExpires time.Duration
	// ResultExtended stores name, args, kwargs, worker, retries and queue
	// with results (result_extended).
	ResultExtended bool

	// Queues the worker consumes; default [DefaultQueue].
	Queues []string
	// ExcludeQueues are left out of Queues (celery worker -X).
	ExcludeQueues []string
	// DefaultQueue receives tasks sent without a queue: SendTask's, and
	// the chain links, callbacks and chord bodies a worker sends
	// (task_default_queue). Default DefaultQueue.
	DefaultQueue string
	// Concurrency is how many tasks run at once; 0 means the number of
	// CPUs, as Celery.
	Concurrency int
	// PrefetchMultiplier: prefetch = Concurrency × this; 0 means
	// DefaultPrefetchMultiplier, a negative value asks for no limit.
	PrefetchMultiplier int
	// AcksLate acknowledges messages after their task ran
	// (task_acks_late).
	AcksLate bool
	// MaxRedeliveries caps how many times the message of an acks_late
	// task that never finished (it killed or hung its worker) is delivered
	// again before the task fails with WorkerLostError and the message is
	// dead-lettered; 0 means worker.MaxRedeliveriesDefault (5), a negative
	// value sets no cap.
	MaxRedeliveries int
	// DefaultQueueType is the type of the queues the App creates:
	// "classic" (default) or "quorum" (Celery 5.5's
	// task_default_queue_type). Queues that exist are used whatever their
	// type; consuming a quorum queue switches to per-consumer prefetch.
	DefaultQueueType string
	// DefaultExchangeType is the type of the exchange declared for each
	// task queue: "direct" (default), "topic" or "fanout" (Celery's
	// task_default_exchange_type). Celery 5.5 sends countdown and ETA
	// tasks for quorum queues through native delayed delivery, which only
	// reaches queues of topic and fanout exchanges.
	DefaultExchangeType string
	// DelayedDeliveryQueueType is the type of the celery_delayed_* queues
	// of native delayed delivery: "quorum" (default) or "classic" (Celery
	// 5.5's broker_native_delayed_delivery_queue_type).
	DelayedDeliveryQueueType string
	// ControlQueueExclusive and ControlQueueDurable declare the remote
	// control queues (the node's pidbox queue, the reply queues)
	// exclusive or durable, as Celery 5.6's control_queue_exclusive and
	// control_queue_durable, instead of transient and auto-delete, which
	// RabbitMQ 4.3 refuses. At most one of them.
	ControlQueueExclusive, ControlQueueDurable bool
	// BrokerHeartbeat is the AMQP heartbeat interval (broker_heartbeat); a
	// silent connection is replaced after 2.5 intervals. 0 means
	// amqptransport.HeartbeatDefault; ?heartbeat= in the broker URL wins.
	BrokerHeartbeat time.Duration
	// TrackStarted stores STARTED before a task runs (task_track_started).
	TrackStarted bool
	// TimeLimit and SoftTimeLimit apply to tasks that give none
	// (task_time_limit, task_soft_time_limit).
	TimeLimit, SoftTimeLimit time.Duration
	// RateLimits maps task names to Celery rate limits ("10/s").
	RateLimits map[string]string
	// Hostname is the node name; %h, %n and %d expand as in celery worker
	// -n. Default DefaultHostname.
	Hostname string
	// Accept lists accepted serializers: "json" (default) and "msgpack".
	// pickle and yaml are never accepted.
	Accept []string
	// Serializer is what SendTask writes: "json" (default) or "msgpack".
	Serializer string
	// SoftShutdownTimeout, as Celery 5.5's worker_soft_shutdown_timeout:
	// when a cold shutdown starts (a second signal), running tasks get this
	// long to finish before their contexts are cancelled. 0: at once.
	SoftShutdownTimeout time.Duration
	// Purge discards the waiting messages of the consumed queues before
	// the worker starts (celery worker --purge).
	Purge bool

	// TaskEvents sends task events (celery worker -E).
	TaskEvents bool
	// HeartbeatInterval between worker-heartbeat events; 0 means
	// DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// StateDB is a file keeping revoked task ids across restarts (celery
	// worker --statedb).
	StateDB string
	// WithoutGossip, WithoutMingle and WithoutHeartbeat turn off what
	// celery worker's flags of the same names turn off.
	WithoutGossip, WithoutMingle, WithoutHeartbeat bool
	// MetricsAddr, when set, serves Prometheus /metrics, /healthz and
	// /readyz on this address (e.g. "127.0.0.1:9808").
	MetricsAddr string

	// Logger receives every log line. Nil: the App builds Celery-shaped
	// logs on standard error at LogLevel, as the command line does.
	Logger *zap.Logger
	// LogLevel of the built logger: DEBUG, INFO (default), WARNING,
	// ERROR or CRITICAL. Ignored when Logger is set.
	LogLevel string

	// Transports maps broker URL schemes to transports; nil means
	// DefaultTransports(). Register a broker of your own in it.
	Transports *transport.Registry
	// ResultBackends maps result backend URL schemes to backends; nil
	// means DefaultResultBackends().
	ResultBackends *result.Registry
}

// ConfigError is a Config that New refuses, with every reason found.
type ConfigError struct{ Problems []string }

func (e *ConfigError) Error() string {
	return "gworker: invalid Config: " + strings.Join(e.Problems, "; ")
}

// ErrInvalidConfig is matched by every *ConfigError with errors.Is.
var ErrInvalidConfig = errors.New("gworker: invalid Config")

// Is makes errors.Is(err, ErrInvalidConfig) true.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// withDefaults returns c with every zero field set to its default. URLs
// are left empty: they are resolved when the App connects.
func (c Config) withDefaults() Config {
	if len(c.Queues) == 0 {
		c.Queues = []string{DefaultQueue}
	}
	if c.Transports == nil {
		c.Transports = DefaultTransports()
	}
	if c.ResultBackends == nil {
		c.ResultBackends = DefaultResultBackends()
	}
	if c.DefaultQueue == "" {
		c.DefaultQueue = DefaultQueue
	}
	if c.Concurrency == 0 {
		c.Concurrency = runtime.NumCPU()
	}
	if c.PrefetchMultiplier == 0 {
		c.PrefetchMultiplier = DefaultPrefetchMultiplier
	}
	if c.ResultExpires == 0 {
		c.ResultExpires = DefaultResultExpires
	}
	if c.Hostname == "" {
		c.Hostname = DefaultHostname
	}
	if len(c.Accept) == 0 {
		c.Accept = []string{"json"}
	}
	if c.Serializer == "" {
		c.Serializer = "json"
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultLogLevel
	}
	return c
}

// validate reports every inconsistency of a defaulted Config.
func (c Config) validate() error {
	var p []string
	p = append(p, checkURLs(c)...)
	switch c.DefaultQueueType {
	case "", amqptransport.QueueTypeClassic, amqptransport.QueueTypeQuorum:
	default:
		p = append(p, fmt.Sprintf("DefaultQueueType %q: want classic or quorum", c.DefaultQueueType))
	}
	switch c.DefaultExchangeType {
	case "", "direct", "topic", "fanout":
	default:
		p = append(p, fmt.Sprintf("DefaultExchangeType %q: want direct, topic or fanout", c.DefaultExchangeType))
	}
	switch c.DelayedDeliveryQueueType {
	case "", amqptransport.QueueTypeClassic, amqptransport.QueueTypeQuorum:
	default:
		p = append(p, fmt.Sprintf("DelayedDeliveryQueueType %q: want quorum or classic", c.DelayedDeliveryQueueType))
	}
	if c.ControlQueueExclusive && c.ControlQueueDurable {
		p = append(p, "ControlQueueExclusive and ControlQueueDurable: a queue cannot be both (an exclusive queue goes with its connection)")
	}
	if c.Concurrency < 0 {
		p = append(p, fmt.Sprintf("Concurrency %d is negative", c.Concurrency))
	}
	if c.TimeLimit < 0 || c.SoftTimeLimit < 0 {
		p = append(p, "TimeLimit and SoftTimeLimit must not be negative")
	}
	if c.TimeLimit > 0 && c.SoftTimeLimit > c.TimeLimit {
		p = append(p, fmt.Sprintf("SoftTimeLimit %v is longer than TimeLimit %v: the soft limit would never fire", c.SoftTimeLimit, c.TimeLimit))
	}
	if c.SoftShutdownTimeout < 0 {
		p = append(p, "SoftShutdownTimeout must not be negative")
	}
	if c.HeartbeatInterval < 0 {
		p = append(p, "HeartbeatInterval must not be negative")
	}
	if _, err := acceptTypes(c.Accept); err != nil {
		p = append(p, err.Error())
	}
	switch c.Serializer {
	case "json", "msgpack":
	default:
		p = append(p, fmt.Sprintf("Serializer %q: json or msgpack", c.Serializer))
	}
	if c.Logger == nil {
		if _, err := parseLevel(c.LogLevel); err != nil {
			p = append(p, err.Error())
		}
	}
	queues := effectiveQueues(c.Queues, c.ExcludeQueues)
	if len(queues) == 0 {
		p = append(p, fmt.Sprintf("ExcludeQueues %v leaves no queue to consume", c.ExcludeQueues))
	}
	for name, rate := range c.RateLimits {
		if _, err := worker.ParseRateLimit(rate); err != nil {
			p = append(p, fmt.Sprintf("RateLimits[%q]: %v", name, err))
		}
	}
	if len(p) > 0 {
		return &ConfigError{Problems: p}
	}
	return nil
}

// effectiveQueues is queues less excluded, in order, without duplicates.
func effectiveQueues(queues, excluded []string) []string {
	skip := map[string]bool{}
	for _, q := range excluded {
		skip[q] = true
	}
	var out []string
	for _, q := range queues {
		if q == "" || skip[q] {
			continue
		}
		skip[q] = true
		out = append(out, q)
	}
	return out
}

// App is a gworker node and client: a registry of Go tasks, the broker
// and result backend connections, and a worker once started. Its methods
// are safe for concurrent use.
type App struct {
	cfg      Config
	registry *worker.Registry

	mu      sync.Mutex
	conn    *conn // nil until connected
	logger  *zap.Logger
	running *run // the started worker, nil before Start
}

// NewApp checks cfg and returns an App, or a *ConfigError.
func NewApp(cfg Config) (*App, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &App{cfg: cfg, registry: worker.NewRegistry()}, nil
}

// New is NewApp for a Config known to be valid: it panics with the
// *ConfigError otherwise, as regexp.MustCompile does.
func New(cfg Config) *App {
	a, err := NewApp(cfg)
	if err != nil {
		panic(err)
	}
	return a
}

// Config returns the App's Config with its defaults filled in.
func (a *App) Config() Config { return a.cfg }

// Registry returns the App's task registry.
func (a *App) Registry() *worker.Registry { return a.registry }

// log returns the App's logger, building it on first use.
func (a *App) log() *zap.Logger {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logLocked()
}

func (a *App) logLocked() *zap.Logger {
	if a.logger == nil {
		if a.cfg.Logger != nil {
			a.logger = a.cfg.Logger
		} else {
			l, err := NewLogger(a.cfg.LogLevel, os.Stderr)
			if err != nil { // validated in New
				l = zap.NewNop()
			}
			a.logger = l
		}
	}
	return a.logger
}

// Connect connects to the broker and the result backend if the App is not
// connected yet. SendTask, Start and the other methods that need the
// broker call it; calling it first separates connection errors from the
// rest. It waits for the broker until ctx ends.
func (a *App) Connect(ctx context.Context) error {
	_, err := a.connect(ctx, roleClient)
	return err
}

func (a *App) connect(ctx context.Context, r role) (*conn, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn != nil {
		if r == roleWorker && a.conn.role != roleWorker {
			return nil, errors.New("gworker: the App connected as a client first; Start needs a fresh App")
		}
		return a.conn, nil
	}
	c, err := dial(ctx, a.cfg, a.logLocked(), r)
	if err != nil {
		return nil, err
	}
	a.conn = c
	return c, nil
}

// Close releases the broker and backend connections. It does not stop a
// started worker: use Stop, which closes them too.
func (a *App) Close() error {
	a.mu.Lock()
	c := a.conn
	a.conn = nil
	a.mu.Unlock()
	if c == nil {
		return nil
	}
	return c.close()
}

// Producer returns the App's producer, connecting first if needed. Canvas
// primitives take it: canvas.Group(...).ApplyAsync(ctx, p).
func (a *App) Producer(ctx context.Context) (*producer.Producer, error) {
	c, err := a.connect(ctx, roleClient)
	if err != nil {
		return nil, err
	}
	return c.producer, nil
}

// Backend returns the App's result backend (nil when results are
// disabled), connecting first if needed.
func (a *App) Backend(ctx context.Context) (result.Backend, error) {
	c, err := a.connect(ctx, roleClient)
	if err != nil {
		return nil, err
	}
	return c.backend, nil
}

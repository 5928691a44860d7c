// Package config holds the settings of a gworker node as Celery names
// them: the App's Config with its defaults and validation, and every
// default value as a named constant.
//
// It is a leaf: it imports nothing of gworker's but protocol, so that
// every other package (the App, the command line, the worker, the
// producer, the transports) can take its defaults from here and a default
// is written once. Which URL schemes a node accepts is the App's to say:
// the schemes of its transport and result backend registries.
package config

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
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
	// rpc://, Celery's database tables (db+postgresql://user:pass@host/db,
	// db+mysql://...), django-celery-results' (django-db+postgresql://...,
	// django-db+mysql://...) or disabled://. Empty: --result-backend,
	// CELERY_RESULT_BACKEND, else results are not stored.
	ResultBackend string
	// ResultExpires is how long stored results live; 0 means
	// DefaultResultExpires, a negative value keeps them forever.
	ResultExpires time.Duration
	// ResultExtended stores name, args, kwargs, worker, retries and queue
	// with results (result_extended).
	ResultExtended bool
	// DatabaseTableNames and DatabaseTableSchemas rename Celery's database
	// backend tables and put them in schemas (database_table_names and
	// database_table_schemas; keys "task" and "group"), for db+ result
	// backends.
	DatabaseTableNames, DatabaseTableSchemas map[string]string

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
	// dead-lettered; 0 means DefaultMaxRedeliveries, a negative value sets
	// no cap.
	MaxRedeliveries int
	// MaxMessageSize caps a task message's body after decompression, in
	// bytes; a larger one is rejected with a log line saying why, and the
	// worker goes on. 0 means DefaultMaxBodySize.
	MaxMessageSize int
	// MaxMessageValues caps the values (scalars, lists, maps) a task
	// message's body decodes to, so that a body within MaxMessageSize
	// cannot expand into far more memory; a message beyond it is rejected
	// like a too large one. 0 means DefaultMaxMessageValues, negative no
	// cap.
	MaxMessageValues int
	// ETAHorizon: an ETA or countdown message due later than this is held
	// only until the horizon, then published again and acknowledged, so
	// that no delivery stays unacknowledged past the broker's
	// consumer_timeout. 0 means DefaultETAHorizon. Keep it below RabbitMQ's
	// consumer_timeout (30 minutes by default): the broker does not tell
	// its consumers that setting, so a worker cannot check it.
	ETAHorizon time.Duration
	// ETATaskLimit is Celery 5.6's worker_eta_task_limit: at most this
	// many ETA and countdown messages are held in memory raising the
	// prefetch window; past it they wait in the window, on at most half of
	// it, and then on the broker (sent back, through native delayed
	// delivery where the queue has it). 0 means DefaultMaxHeldETA.
	ETATaskLimit int
	// DefaultQueueType is the type of the queues the App creates:
	// QueueTypeClassic (default) or QueueTypeQuorum (Celery 5.5's
	// task_default_queue_type). Queues that exist are used whatever their
	// type; consuming a quorum queue switches to per-consumer prefetch.
	DefaultQueueType string
	// DefaultExchangeType is the type of the exchange declared for each
	// task queue: "direct" (DefaultExchangeType), "topic" or "fanout"
	// (Celery's task_default_exchange_type). Celery 5.5 sends countdown
	// and ETA tasks for quorum queues through native delayed delivery,
	// which only reaches queues of topic and fanout exchanges.
	DefaultExchangeType string
	// DelayedDeliveryQueueType is the type of the celery_delayed_* queues
	// of native delayed delivery: QueueTypeQuorum
	// (DefaultDelayedDeliveryQueueType) or QueueTypeClassic (Celery 5.5's
	// broker_native_delayed_delivery_queue_type).
	DelayedDeliveryQueueType string
	// ControlQueueExclusive and ControlQueueDurable declare the remote
	// control queues (the node's pidbox queue, the reply queues)
	// exclusive or durable, as Celery 5.6's control_queue_exclusive and
	// control_queue_durable, instead of transient and auto-delete, which
	// RabbitMQ 4.3 refuses. At most one of them.
	ControlQueueExclusive, ControlQueueDurable bool
	// BrokerHeartbeat is the AMQP heartbeat interval (broker_heartbeat); a
	// silent connection is replaced after 2.5 intervals. 0 means
	// DefaultBrokerHeartbeat; ?heartbeat= in the broker URL wins.
	BrokerHeartbeat time.Duration
	// TrackStarted stores STARTED before a task runs (task_track_started).
	TrackStarted bool
	// TimeLimit and SoftTimeLimit apply to tasks that give none
	// (task_time_limit, task_soft_time_limit).
	TimeLimit, SoftTimeLimit time.Duration
	// RateLimits maps task names to Celery rate limits ("10/s"). Package
	// worker parses them (worker.ParseRateLimit): Validate leaves their
	// syntax to the App, which checks it when it is built.
	RateLimits map[string]string
	// Hostname is the node name; %h, %n and %d expand as in celery worker
	// -n. Default DefaultHostname.
	Hostname string
	// Accept lists accepted serializers: "json" (default) and "msgpack",
	// or their content types. pickle and yaml are never accepted.
	Accept []string
	// Serializer is what SendTask writes: "json" (DefaultSerializer) or
	// "msgpack".
	Serializer string
	// SoftShutdownTimeout, as Celery 5.5's worker_soft_shutdown_timeout:
	// when a cold shutdown starts (a second signal), running tasks get this
	// long to finish before their contexts are cancelled. 0: at once.
	SoftShutdownTimeout time.Duration
	// EnableSoftShutdownOnIdle, as Celery 5.5's
	// worker_enable_soft_shutdown_on_idle: a cold shutdown of an idle
	// worker (no task runs and no result waits to be stored) skips the
	// soft shutdown and cancels at once, unless this is set; then an idle
	// worker too gets up to SoftShutdownTimeout to end its warm shutdown.
	// Celery needs it to requeue held ETA tasks on Redis; gworker returns
	// held ETA and prefetched messages to the broker either way, and the
	// wait lets the broker confirm the consumer's cancellation first.
	// Default DefaultEnableSoftShutdownOnIdle.
	EnableSoftShutdownOnIdle bool
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
	// ERROR or CRITICAL (see ParseLogLevel). Ignored when Logger is set.
	LogLevel string
	// AppName and AppVersion name the program that embeds gworker, for
	// its banner, --version, its command line's usage and `inspect stats`
	// and `inspect report`; AppName defaults to DefaultAppName, and an
	// empty AppVersion shows gworker's own version.
	AppName, AppVersion string
	// LogFormat of the built logger: LogFormatText (default), lines shaped
	// like Celery's, or LogFormatJSON, one JSON object per line for log
	// shippers. Ignored when Logger is set.
	LogFormat string
}

// Error is a Config that Validate (and so the App) refuses, with every
// reason found.
type Error struct{ Problems []string }

func (e *Error) Error() string {
	return "gworker: invalid Config: " + strings.Join(e.Problems, "; ")
}

// ErrInvalid is matched by every *Error with errors.Is.
var ErrInvalid = errors.New("gworker: invalid Config")

// Is makes errors.Is(err, ErrInvalid) true.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// WithDefaults returns c with every zero field set to its default. URLs
// are left empty: ResolvedBrokerURL and ResolvedResultBackend resolve them
// when a node connects.
func (c Config) WithDefaults() Config {
	if len(c.Queues) == 0 {
		c.Queues = []string{DefaultQueue}
	}
	if c.DefaultQueue == "" {
		c.DefaultQueue = DefaultQueue
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency()
	}
	if c.PrefetchMultiplier == 0 {
		c.PrefetchMultiplier = DefaultPrefetchMultiplier
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxBodySize
	}
	if c.MaxMessageValues == 0 {
		c.MaxMessageValues = DefaultMaxMessageValues
	}
	if c.ETAHorizon == 0 {
		c.ETAHorizon = DefaultETAHorizon
	}
	if c.ResultExpires == 0 {
		c.ResultExpires = DefaultResultExpires
	}
	if c.Hostname == "" {
		c.Hostname = DefaultHostname
	}
	if len(c.Accept) == 0 {
		c.Accept = DefaultAccept()
	}
	if c.Serializer == "" {
		c.Serializer = DefaultSerializer
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultLogLevel
	}
	if c.AppName == "" {
		c.AppName = DefaultAppName
	}
	return c
}

// Validate reports every inconsistency of a Config (defaulted or not) as
// one *Error, or nil. The syntax of RateLimits is left to package worker,
// which parses it.
func (c Config) Validate() error {
	var p []string
	switch c.DefaultQueueType {
	case "", QueueTypeClassic, QueueTypeQuorum:
	default:
		p = append(p, fmt.Sprintf("DefaultQueueType %q: want classic or quorum", c.DefaultQueueType))
	}
	switch c.DefaultExchangeType {
	case "", "direct", "topic", "fanout":
	default:
		p = append(p, fmt.Sprintf("DefaultExchangeType %q: want direct, topic or fanout", c.DefaultExchangeType))
	}
	switch c.DelayedDeliveryQueueType {
	case "", QueueTypeClassic, QueueTypeQuorum:
	default:
		p = append(p, fmt.Sprintf("DelayedDeliveryQueueType %q: want quorum or classic", c.DelayedDeliveryQueueType))
	}
	if c.ControlQueueExclusive && c.ControlQueueDurable {
		p = append(p, "ControlQueueExclusive and ControlQueueDurable: a queue cannot be both (an exclusive queue goes with its connection)")
	}
	if c.Concurrency < 0 {
		p = append(p, fmt.Sprintf("Concurrency %d is negative", c.Concurrency))
	}
	if c.MaxMessageSize < 0 {
		p = append(p, fmt.Sprintf("MaxMessageSize %d is negative", c.MaxMessageSize))
	}
	if c.ETATaskLimit < 0 {
		p = append(p, "ETATaskLimit must not be negative")
	}
	if c.ETAHorizon < 0 {
		p = append(p, "ETAHorizon must not be negative")
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
	if _, err := AcceptContentTypes(c.Accept); err != nil {
		p = append(p, err.Error())
	}
	switch c.Serializer {
	case "", "json", "msgpack":
	default:
		p = append(p, fmt.Sprintf("Serializer %q: json or msgpack", c.Serializer))
	}
	if c.Logger == nil {
		switch c.LogFormat {
		case "", LogFormatText, LogFormatJSON:
		default:
			p = append(p, fmt.Sprintf("LogFormat %q: %s or %s", c.LogFormat, LogFormatText, LogFormatJSON))
		}
		if _, err := ParseLogLevel(c.LogLevel); err != nil {
			p = append(p, err.Error())
		}
	}
	for field, m := range map[string]map[string]string{"DatabaseTableNames": c.DatabaseTableNames, "DatabaseTableSchemas": c.DatabaseTableSchemas} {
		for k, v := range m {
			if k != "task" && k != "group" {
				p = append(p, fmt.Sprintf("%s[%q]: keys are \"task\" and \"group\"", field, k))
			} else if v == "" {
				p = append(p, fmt.Sprintf("%s[%q] is empty", field, k))
			}
		}
	}
	if len(c.ConsumedQueues()) == 0 {
		p = append(p, fmt.Sprintf("ExcludeQueues %v leaves no queue to consume", c.ExcludeQueues))
	}
	if len(p) > 0 {
		return &Error{Problems: p}
	}
	return nil
}

// ConsumedQueues returns the queues a worker of c consumes: Queues (or
// DefaultQueue when none are named) less ExcludeQueues.
func (c Config) ConsumedQueues() []string {
	queues := c.Queues
	if len(queues) == 0 {
		queues = []string{DefaultQueue}
	}
	return EffectiveQueues(queues, c.ExcludeQueues)
}

// EffectiveQueues is queues less excluded, in order, without duplicates
// or empty names.
func EffectiveQueues(queues, excluded []string) []string {
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

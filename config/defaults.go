package config

import (
	"runtime"
	"time"

	"github.com/gworker/gworker/protocol"
)

// Defaults of a node, as Celery's where Celery has the setting. Packages
// below the App (worker, producer, events, the transports) take their
// defaults from here, so that a value is written once.
const (
	// DefaultBrokerURL is used when neither Config, --broker nor
	// CELERY_BROKER_URL name a broker (Celery's broker_url default).
	DefaultBrokerURL = "amqp://guest:guest@localhost:5672//"
	// DefaultQueue is the queue consumed and sent to when none is named
	// (task_default_queue).
	DefaultQueue = "celery"
	// DefaultQueueType is the type of the queues a node creates
	// (task_default_queue_type).
	DefaultQueueType = QueueTypeClassic
	// DefaultExchangeType is the type of the exchange declared for each
	// task queue (task_default_exchange_type).
	DefaultExchangeType = "direct"
	// DefaultDelayedDeliveryQueueType is the type of the celery_delayed_*
	// queues of native delayed delivery
	// (broker_native_delayed_delivery_queue_type, as Celery 5.5's).
	DefaultDelayedDeliveryQueueType = QueueTypeQuorum
	// DefaultPrefetchMultiplier: prefetch = concurrency × this
	// (worker_prefetch_multiplier).
	DefaultPrefetchMultiplier = 4
	// DefaultResultExpires is how long results are kept (result_expires).
	DefaultResultExpires = 24 * time.Hour
	// DefaultHostname is the node name pattern (celery worker -n); see
	// ExpandHostname.
	DefaultHostname = "celery@%h"
	// DefaultHeartbeatInterval is how often worker-heartbeat events are
	// sent (--heartbeat-interval).
	DefaultHeartbeatInterval = 2 * time.Second
	// DefaultBrokerHeartbeat is the AMQP heartbeat interval
	// (broker_heartbeat). It is shorter than Celery's 120 s (negotiated
	// down to RabbitMQ's 60 s): a half-open TCP connection is noticed after
	// about two missed intervals, and a minute-long blind window redelivers
	// too many tasks twice.
	DefaultBrokerHeartbeat = 20 * time.Second
	// DefaultLogLevel is the command line's and the built logger's level.
	DefaultLogLevel = "INFO"
	// DefaultSerializer is what a node sends tasks with (task_serializer).
	DefaultSerializer = "json"
	// DefaultStopTimeout bounds how long a warm shutdown waits for the
	// broker to confirm the consumer's cancellation.
	DefaultStopTimeout = 5 * time.Second
	// DefaultEnableSoftShutdownOnIdle: an idle worker skips the soft
	// shutdown, as Celery 5.5 (worker_enable_soft_shutdown_on_idle).
	DefaultEnableSoftShutdownOnIdle = false
	// DefaultMaxConcurrency caps a worker's pool size, however often
	// pool_grow is sent: each slot is a goroutine and raises the prefetch
	// window by the prefetch multiplier.
	DefaultMaxConcurrency = 10000
	// DefaultRememberFinished is how many acks_late tasks that finished a
	// worker remembers, so that a copy the broker delivers again after a
	// lost acknowledgement is acknowledged without running twice.
	DefaultRememberFinished = 10000
	// DefaultMaxRedeliveries caps the deliveries after the first of an
	// acks_late task's message that never finished before the task fails
	// with WorkerLostError.
	DefaultMaxRedeliveries = 5
	// DefaultMaxHeldETA caps how many waiting ETA and countdown messages
	// raise a worker's prefetch window; beyond it they wait inside the
	// normal window.
	DefaultMaxHeldETA = 10000
	// DefaultMaxHeldETABytes caps the body bytes of those held messages:
	// 64 MiB.
	DefaultMaxHeldETABytes = 64 << 20
	// DefaultETAHorizon: a message due later than this is held only until
	// the horizon, then published again, so that no delivery stays
	// unacknowledged past RabbitMQ's consumer_timeout.
	DefaultETAHorizon = 25 * time.Minute
	// DefaultMaxPendingResults caps the final results a worker keeps in
	// memory while the result backend is down.
	DefaultMaxPendingResults = 10000
	// DefaultMaxBodySize caps a task body after decompression: 16 MiB.
	// Its home is package protocol, which decodes bodies and imports
	// nothing of gworker's.
	DefaultMaxBodySize = protocol.DefaultMaxBodySize
	// DefaultMaxMessageValues caps the values a task body decodes to
	// (protocol.DefaultMaxValues, about 2 million).
	DefaultMaxMessageValues = protocol.DefaultMaxValues
)

// The accepted names of queue types (Config.DefaultQueueType).
const (
	QueueTypeClassic = "classic"
	QueueTypeQuorum  = "quorum"
)

// DefaultConcurrency returns how many tasks a node runs at once when
// Concurrency is 0: the number of CPUs, as Celery.
func DefaultConcurrency() int { return runtime.NumCPU() }

// DefaultAccept returns the serializers a node accepts by default
// (accept_content): json only.
func DefaultAccept() []string { return []string{DefaultSerializer} }

// DefaultMingleTimeout is how long mingle waits for the other nodes'
// replies at start-up (Celery: 1 s).
const DefaultMingleTimeout = time.Second

// Log formats of the built logger (Config.LogFormat).
const (
	LogFormatText = "text"
	LogFormatJSON = "json"
)

// DefaultAppName is Config.AppName's default.
const DefaultAppName = "gworker"

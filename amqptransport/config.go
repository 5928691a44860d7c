package amqptransport

import (
	"fmt"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/gworker/gworker/config"
	"github.com/gworker/gworker/internal/redact"
)

// DefaultURL is Celery's default broker URL. The "//" at the end names the
// virtual host "/" (config.DefaultBrokerURL).
const DefaultURL = config.DefaultBrokerURL

// Defaults of Config.
const (
	// DefaultHeartbeat is config.DefaultBrokerHeartbeat, shorter than
	// Celery's broker_heartbeat.
	DefaultHeartbeat    = config.DefaultBrokerHeartbeat
	DefaultReconnectMin = 100 * time.Millisecond
	DefaultReconnectMax = 5 * time.Second
	// DefaultDialTimeout bounds the TCP connect and AMQP handshake of one
	// attempt.
	DefaultDialTimeout = 30 * time.Second
	// DefaultQuarantineScanLimit is how many messages a quarantine sweep
	// inspects per queue at most.
	DefaultQuarantineScanLimit = 1000
	// DefaultExchangeType is config.DefaultExchangeType, Celery's
	// task_default_exchange_type.
	DefaultExchangeType = config.DefaultExchangeType
	// DefaultDelayedDeliveryQueueType is
	// config.DefaultDelayedDeliveryQueueType, as Celery 5.5's
	// broker_native_delayed_delivery_queue_type.
	DefaultDelayedDeliveryQueueType = config.DefaultDelayedDeliveryQueueType
)

// Config configures a Broker. The zero value connects to DefaultURL.
type Config struct {
	// URL is the broker URL, amqp://user:pass@host:port/vhost or amqps://...
	// Celery's spelling is accepted: "//" at the end means vhost "/", and
	// the scheme pyamqp:// is read as amqp://. Empty means DefaultURL.
	//
	// Several URLs separated by ";" (Celery's failover syntax, e.g. the
	// nodes of a cluster) are tried in turn: the first connection takes the
	// first that answers, and after a lost connection the next one is
	// tried first (round robin), then the others, before backing off.
	//
	// ?heartbeat=SECONDS in a URL overrides Heartbeat for it, as
	// ?connection_timeout=MILLISECONDS and ?channel_max=N set those.
	URL string

	// Logger receives connection events; nil means zap.NewNop().
	Logger *zap.Logger

	// Heartbeat is the AMQP heartbeat interval proposed to the broker
	// (the smaller of both sides wins; Celery's broker_heartbeat). Zero
	// means DefaultHeartbeat; a negative value takes the broker's
	// interval. A connection from which nothing (not even a heartbeat) is
	// read for 2.5 intervals (RabbitMQ sends a heartbeat every half
	// interval) is taken as dead and replaced: that is how a half-open TCP
	// connection (a broker host gone without a FIN) is detected.
	Heartbeat time.Duration

	// ReconnectMin and ReconnectMax bound the delay between reconnection
	// attempts: it starts at ReconnectMin, doubles after each failure up
	// to ReconnectMax, and each wait is jittered to between half and all of
	// it. Zero means DefaultReconnectMin and DefaultReconnectMax.
	ReconnectMin, ReconnectMax time.Duration

	// DialTimeout bounds one connection attempt (TCP and AMQP handshake).
	// Zero means DefaultDialTimeout.
	DialTimeout time.Duration

	// ConnectionName is shown by RabbitMQ (client property
	// connection_name). The publishing connection gets the suffix
	// " (publisher)". Empty means "gworker".
	ConnectionName string

	// DefaultQueueType is the type of the task queues this broker creates
	// (Broker.TaskQueue, and the queues a worker consumes): QueueTypeClassic
	// (empty means classic) or QueueTypeQuorum, as Celery 5.5's
	// task_default_queue_type. Queues that already exist are consumed
	// whatever their type. Quorum queues are replicated and count
	// deliveries (x-delivery-count), but have no per-message priority and
	// refuse global QoS; see the package documentation.
	DefaultQueueType string

	// DefaultExchangeType is the type of the exchange this broker declares
	// for each of its task queues (Broker.TaskQueue), as Celery's
	// task_default_exchange_type: "direct" (empty means direct), "topic"
	// or "fanout". Celery 5.5's native delayed delivery only reaches queues
	// bound to topic or fanout exchanges. An exchange that already exists
	// with another type is used as it is.
	DefaultExchangeType string

	// DelayedDeliveryQueueType is the type of the 28 celery_delayed_*
	// queues of native delayed delivery (see the package documentation),
	// as Celery 5.5's broker_native_delayed_delivery_queue_type:
	// QueueTypeQuorum (empty means quorum) or QueueTypeClassic. Every
	// node of a fleet must use the same, as every declaration of a queue
	// must.
	DelayedDeliveryQueueType string

	// QuarantineScanLimit caps how many messages per queue a quarantine
	// sweep inspects (see the package documentation). Zero means
	// DefaultQuarantineScanLimit; a negative value disables the sweep.
	QuarantineScanLimit int
}

// validate reports a configuration Dial cannot use.
func (c Config) validate() error {
	switch c.DefaultQueueType {
	case "", QueueTypeClassic, QueueTypeQuorum:
	default:
		return fmt.Errorf("%w: default queue type %q (want %s or %s)", ErrInvalidConfig, c.DefaultQueueType, QueueTypeClassic, QueueTypeQuorum)
	}
	switch c.DefaultExchangeType {
	case "", "direct", "topic", "fanout":
	default:
		return fmt.Errorf("%w: default exchange type %q (want direct, topic or fanout)", ErrInvalidConfig, c.DefaultExchangeType)
	}
	switch c.DelayedDeliveryQueueType {
	case "", QueueTypeClassic, QueueTypeQuorum:
	default:
		return fmt.Errorf("%w: delayed delivery queue type %q (want %s or %s)", ErrInvalidConfig, c.DelayedDeliveryQueueType, QueueTypeQuorum, QueueTypeClassic)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.ReconnectMin <= 0 {
		c.ReconnectMin = DefaultReconnectMin
	}
	if c.ReconnectMax <= 0 {
		c.ReconnectMax = DefaultReconnectMax
	}
	if c.ReconnectMax < c.ReconnectMin {
		c.ReconnectMax = c.ReconnectMin
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.ConnectionName == "" {
		c.ConnectionName = "gworker"
	}
	if c.DefaultExchangeType == "" {
		c.DefaultExchangeType = DefaultExchangeType
	}
	if c.DelayedDeliveryQueueType == "" {
		c.DelayedDeliveryQueueType = DefaultDelayedDeliveryQueueType
	}
	if c.QuarantineScanLimit == 0 {
		c.QuarantineScanLimit = DefaultQuarantineScanLimit
	}
	return c
}

// endpoint is one broker URL of Config.URL.
type endpoint struct {
	uri amqp.URI
	url string // normalized, for amqp.DialConfig
	raw string // as configured, for logs (redacted)
}

// parseURLs splits Config.URL on ";" (Celery's failover list) and parses
// every URL.
func parseURLs(raw string) ([]endpoint, error) {
	var eps []endpoint
	for _, part := range strings.Split(raw, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		uri, url, err := parseURL(part)
		if err != nil {
			return nil, err
		}
		eps = append(eps, endpoint{uri: uri, url: url, raw: part})
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("%w: empty broker URL list %q", ErrInvalidConfig, RedactURL(raw))
	}
	return eps, nil
}

// parseURL normalizes a Celery broker URL and parses it.
func parseURL(raw string) (amqp.URI, string, error) {
	u := strings.TrimSpace(raw)
	for _, p := range []string{"pyamqp://", "py-amqp://"} {
		if strings.HasPrefix(u, p) {
			u = "amqp://" + u[len(p):]
		}
	}
	uri, err := amqp.ParseURI(u)
	if err != nil {
		return amqp.URI{}, "", fmt.Errorf("%w: broker URL %s: %v", ErrInvalidConfig, RedactURL(raw), redact.Error(redact.Error(err, u), raw))
	}
	if uri.Vhost == "" {
		uri.Vhost = "/"
	}
	return uri, u, nil
}

// RedactURL returns the URL with its password replaced by "**", the way
// Celery prints broker URLs: amqp://guest:**@localhost:5672//. A URL without
// a password is returned unchanged; one that does not parse is hidden up
// to its last '@'.
func RedactURL(url string) string { return redact.URL(url) }

// backoff computes jittered, capped exponential delays.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
	rnd      func() float64
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur *= 2
		if b.cur > b.max {
			b.cur = b.max
		}
	}
	f := 0.5 + 0.5*b.rnd()
	return time.Duration(float64(b.cur) * f)
}

func (b *backoff) reset() { b.cur = 0 }

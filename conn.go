package gworker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/control"
	"github.com/gworker/gworker/internal/amqpops"
	"github.com/gworker/gworker/internal/amqpworker"
	"github.com/gworker/gworker/internal/redact"
	"github.com/gworker/gworker/internal/redisops"
	"github.com/gworker/gworker/internal/redisworker"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/redistransport"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
	"github.com/gworker/gworker/result/rpcbackend"
	"github.com/gworker/gworker/worker"
)

// role tells dial whether the rpc:// backend answers tasks (a worker) or
// reads replies (a client).
type role int

const (
	roleClient role = iota
	roleWorker
)

// Errors of connecting.
var (
	// ErrUnsupportedBroker: the broker URL's scheme names no transport
	// gworker has.
	ErrUnsupportedBroker = errors.New("unsupported broker")
	// ErrUnsupportedBackend: the result backend URL's scheme names no
	// backend gworker has.
	ErrUnsupportedBackend = errors.New("unsupported result backend")
)

// conn is what an App is connected to.
type conn struct {
	role      role
	brokerURL string                 // as given, for logs through RedactURL
	amqp      *amqptransport.Broker  // nil on a Redis broker
	redis     *redistransport.Broker // nil on RabbitMQ
	broker    worker.Broker
	backend   result.Backend
	producer  *producer.Producer
	followups worker.Followups
	closers   []func() error
}

func (c *conn) close() error {
	var errs []error
	for i := len(c.closers) - 1; i >= 0; i-- {
		errs = append(errs, c.closers[i]())
	}
	return errors.Join(errs...)
}

func schemeOf(raw string) string {
	s := strings.ToLower(raw)
	if i := strings.Index(s, "://"); i >= 0 {
		return s[:i]
	}
	return ""
}

func checkBrokerURL(raw string) error {
	switch schemeOf(raw) {
	case "amqp", "amqps", "pyamqp", "redis", "rediss", "sentinel":
		return nil
	}
	return fmt.Errorf("broker %s: %w (amqp://, amqps://, redis://, rediss://, sentinel://)", RedactURL(raw), ErrUnsupportedBroker)
}

// isRedisBroker reports whether the broker URL names kombu's Redis
// transport.
func isRedisBroker(raw string) bool {
	switch schemeOf(raw) {
	case "redis", "rediss", "sentinel":
		return true
	}
	return false
}

func checkBackendURL(raw string) error {
	switch schemeOf(raw) {
	case "redis", "rediss", "rpc", "disabled":
		return nil
	}
	if isSQLBackend(raw) {
		return checkSQLBackendURL(raw)
	}
	return fmt.Errorf("result backend %s: %w (redis://, rediss://, rpc://, db+postgresql://, db+mysql://, django-db+postgresql://, django-db+mysql://, disabled://)", RedactURL(raw), ErrUnsupportedBackend)
}

// brokerURL resolves the broker: Config, then CELERY_BROKER_URL, then
// DefaultBrokerURL.
func (c Config) brokerURL() string {
	if c.BrokerURL != "" {
		return c.BrokerURL
	}
	if v := os.Getenv("CELERY_BROKER_URL"); v != "" {
		return v
	}
	return DefaultBrokerURL
}

// backendURL resolves the result backend: Config, then
// CELERY_RESULT_BACKEND; "" means none.
func (c Config) backendURL() string {
	v := c.ResultBackend
	if v == "" {
		v = os.Getenv("CELERY_RESULT_BACKEND")
	}
	if strings.HasPrefix(strings.ToLower(v), "disabled:") {
		return ""
	}
	return v
}

// dial connects to the broker (waiting for it until ctx ends) and the
// result backend, and builds the producer and follow-ups on them.
func dial(ctx context.Context, cfg Config, log *zap.Logger, r role) (*conn, error) {
	brokerURL, backendURL := cfg.brokerURL(), cfg.backendURL()
	if err := checkBrokerURL(brokerURL); err != nil {
		return nil, err
	}
	if backendURL != "" {
		if err := checkBackendURL(backendURL); err != nil {
			return nil, err
		}
	}
	c, pub, err := dialBroker(ctx, cfg, brokerURL, log, r)
	if err != nil {
		return nil, err
	}

	replyTo := producer.NewID()
	switch schemeOf(backendURL) {
	case "":
	case "redis", "rediss":
		routeRedisLogs(log)
		opts := redisbackend.Options{Expires: cfg.ResultExpires, Logger: log}
		if cfg.ResultExpires < 0 {
			opts.Expires, opts.NoExpiry = 0, true
		}
		rb, err := redisbackend.Open(backendURL, opts)
		if err != nil {
			_ = c.close()
			return nil, fmt.Errorf("result backend %s: %w", RedactURL(backendURL), err)
		}
		c.backend = rb
		c.closers = append(c.closers, rb.Close)
	case "rpc":
		b := c.amqp
		if b == nil {
			_ = c.close()
			return nil, fmt.Errorf("result backend rpc://: %w: it needs an AMQP broker", ErrUnsupportedBackend)
		}
		if r == roleWorker {
			c.backend = rpcbackend.NewAMQPWorkerSide(b)
		} else {
			expires := cfg.ResultExpires
			if expires < 0 {
				expires = 0
			}
			rb, err := rpcbackend.NewAMQP(ctx, b, rpcbackend.Options{ReplyTo: replyTo, Expires: expires, Logger: log})
			if err != nil {
				_ = c.close()
				return nil, fmt.Errorf("result backend rpc://: %w", err)
			}
			c.backend = rb
			c.closers = append(c.closers, rb.Close)
		}
	default: // db+... and django-db+...: checkBackendURL let nothing else through
		sb, closeSQL, err := openSQLBackend(cfg, backendURL, log)
		if err != nil {
			_ = c.close()
			return nil, fmt.Errorf("result backend %s: %w", RedactURL(backendURL), err)
		}
		c.backend = sb
		c.closers = append(c.closers, closeSQL)
	}
	c.producer = producer.New(pub, producer.Options{
		Backend: c.backend, DefaultQueue: cfg.DefaultQueue, ReplyTo: replyTo,
		Serializer: cfg.Serializer, Logger: log,
	})
	c.followups = worker.NewFollowups(c.producer, c.backend, log)
	return c, nil
}

// dialBroker connects to the broker of the URL's scheme: RabbitMQ through
// amqptransport, Redis (and Sentinel) through redistransport.
func dialBroker(ctx context.Context, cfg Config, brokerURL string, log *zap.Logger, r role) (*conn, producer.Publisher, error) {
	c := &conn{role: r, brokerURL: brokerURL}
	if isRedisBroker(brokerURL) {
		routeRedisLogs(log)
		b, err := redistransport.Dial(ctx, redistransport.Config{URL: brokerURL, Logger: log, TransportOptions: cfg.BrokerTransportOptions})
		if err != nil {
			return nil, nil, fmt.Errorf("broker %s: %w", RedactURL(brokerURL), err)
		}
		c.redis, c.broker = b, redisworker.New(b)
		c.closers = append(c.closers, b.Close)
		return c, b, nil
	}
	host, _ := os.Hostname()
	b, err := amqptransport.Dial(ctx, amqptransport.Config{URL: brokerURL, Logger: log, ConnectionName: "gworker@" + host,
		DefaultQueueType: cfg.DefaultQueueType, Heartbeat: cfg.BrokerHeartbeat})
	if err != nil {
		return nil, nil, fmt.Errorf("broker %s: %w", RedactURL(brokerURL), err)
	}
	c.amqp, c.broker = b, amqpworker.New(b)
	c.closers = append(c.closers, b.Close)
	return c, b, nil
}

// opsTransport carries remote control and events on the broker.
func (c *conn) opsTransport(log *zap.Logger) control.Transport {
	if c.redis != nil {
		return redisops.New(c.redis, log)
	}
	return amqpops.New(c.amqp, log)
}

// RedactURL hides the password of a broker or backend URL as Celery prints
// them (amqp://guest:**@host//, redis://:**@host:6379/0), including a
// password= query parameter and every URL of a ;-separated list.
func RedactURL(raw string) string { return redact.URL(raw) }

// clientConnectTimeout bounds how long call and result wait for the broker
// before they fail and say why.
const clientConnectTimeout = 20 * time.Second

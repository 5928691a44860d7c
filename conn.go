package gworker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/internal/redact"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/transport"
	"github.com/gworker/gworker/worker"
)

// role tells dial whether the result backend stores the results of the
// tasks it runs (a worker) or reads them (a client).
type role int

const (
	roleClient role = iota
	roleWorker
)

// Errors of connecting.
var (
	// ErrUnsupportedBroker: the broker URL's scheme names no transport
	// of the App (DefaultTransports, or Config.Transports).
	ErrUnsupportedBroker = transport.ErrUnsupportedScheme
	// ErrUnsupportedBackend: the result backend URL's scheme names no
	// backend of the App (DefaultResultBackends, or
	// Config.ResultBackends).
	ErrUnsupportedBackend = result.ErrUnsupportedBackend
)

// conn is what an App is connected to.
type conn struct {
	role      role
	brokerURL string // as given, for logs through RedactURL
	broker    transport.Broker
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

// checkURLs reports a broker or result backend URL whose scheme has no
// transport or backend in the App's registries.
func checkURLs(cfg Config) []string {
	var p []string
	if u := cfg.BrokerURL; u != "" && !cfg.transports().Supports(u) {
		p = append(p, fmt.Sprintf("broker %s: %v (%s)", RedactURL(u), ErrUnsupportedBroker, schemeList(cfg.transports().Schemes())))
	}
	if u := cfg.ResultBackend; u != "" && transport.Scheme(u) != "disabled" && !cfg.backends().Supports(u) {
		p = append(p, fmt.Sprintf("result backend %s: %v (%s, disabled://)", RedactURL(u), ErrUnsupportedBackend, schemeList(cfg.backends().Schemes())))
	}
	return p
}

func schemeList(schemes []string) string {
	out := ""
	for i, s := range schemes {
		if i > 0 {
			out += ", "
		}
		out += s + "://"
	}
	return out
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
	if transport.Scheme(v) == "disabled" {
		return ""
	}
	return v
}

// dial connects to the broker (waiting for it until ctx ends) and the
// result backend, and builds the producer and follow-ups on them.
func dial(ctx context.Context, cfg Config, log *zap.Logger, r role) (*conn, error) {
	brokerURL, backendURL := cfg.brokerURL(), cfg.backendURL()
	routeRedisLogs(log)
	host, _ := os.Hostname()
	b, err := cfg.transports().Open(ctx, brokerURL, transport.Options{
		Logger: log, ConnectionName: "gworker@" + host, Heartbeat: cfg.BrokerHeartbeat,
		DefaultQueueType: cfg.DefaultQueueType, TransportOptions: cfg.BrokerTransportOptions,
		DefaultExchangeType: cfg.DefaultExchangeType, DelayedDeliveryQueueType: cfg.DelayedDeliveryQueueType,
	})
	if err != nil {
		return nil, fmt.Errorf("broker %s: %w", RedactURL(brokerURL), err)
	}
	c := &conn{role: r, brokerURL: brokerURL, broker: b, closers: []func() error{b.Close}}

	replyTo := producer.NewID()
	if backendURL != "" {
		rb, err := cfg.backends().Open(ctx, backendURL, result.OpenOptions{
			Broker: b, Worker: r == roleWorker, ReplyTo: replyTo, Expires: cfg.ResultExpires, Logger: log,
		})
		if err != nil {
			_ = c.close()
			return nil, fmt.Errorf("result backend %s: %w", RedactURL(backendURL), err)
		}
		c.backend = rb
		if cl, ok := rb.(interface{ Close() error }); ok {
			c.closers = append(c.closers, cl.Close)
		}
	}
	c.producer = producer.New(b, producer.Options{
		Backend: c.backend, DefaultQueue: cfg.DefaultQueue, ReplyTo: replyTo,
		Serializer: cfg.Serializer, Logger: log,
	})
	c.followups = worker.NewFollowups(c.producer, c.backend, log)
	return c, nil
}

// RedactURL hides the password of a broker or backend URL as Celery prints
// them (amqp://guest:**@host//, redis://:**@host:6379/0), including a
// password= query parameter and every URL of a ;-separated list.
func RedactURL(raw string) string { return redact.URL(raw) }

// clientConnectTimeout bounds how long call and result wait for the broker
// before they fail and say why.
const clientConnectTimeout = 20 * time.Second

package gworker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.uber.org/zap"

	"github.com/gworker/gworker/followup"
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
func checkURLs(cfg Config, reg registries) []string {
	var p []string
	if u := cfg.BrokerURL; u != "" && !reg.transports.Supports(u) {
		p = append(p, fmt.Sprintf("broker %s: %v (%s)", RedactURL(u), ErrUnsupportedBroker, schemeList(reg.transports.Schemes())))
	}
	if u := cfg.ResultBackend; u != "" && transport.Scheme(u) != "disabled" {
		if err := reg.backends.Check(u); err != nil {
			p = append(p, fmt.Sprintf("result backend %s: %v", RedactURL(u), err))
		}
	}
	return p
}

func schemeList(schemes []string) string {
	for i := range schemes {
		schemes[i] += "://"
	}
	return strings.Join(schemes, ", ")
}

// dial connects to the broker (waiting for it until ctx ends) and the
// result backend, and builds the producer and follow-ups on them.
func dial(ctx context.Context, cfg Config, reg registries, log *zap.Logger, r role) (*conn, error) {
	brokerURL, backendURL := cfg.ResolvedBrokerURL(), cfg.ResolvedResultBackend()
	routeRedisLogs(log)
	host, _ := os.Hostname()
	b, err := reg.transports.Open(ctx, brokerURL, transport.Options{
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
		rb, err := reg.backends.Open(ctx, backendURL, result.OpenOptions{
			Broker: b, Worker: r == roleWorker, ReplyTo: replyTo, Expires: cfg.ResultExpires, Logger: log,
			TableNames: cfg.DatabaseTableNames, TableSchemas: cfg.DatabaseTableSchemas,
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
		Serializer: cfg.Serializer, Logger: log, Middleware: reg.publish,
	})
	c.followups = followup.NewFollowups(c.producer, c.backend, log)
	return c, nil
}

// RedactURL hides the password of a broker or backend URL as Celery prints
// them (amqp://guest:**@host//, redis://:**@host:6379/0), including a
// password= query parameter and every URL of a ;-separated list.
func RedactURL(raw string) string { return redact.URL(raw) }

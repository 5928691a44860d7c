package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/internal/redact"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
	"github.com/gworker/gworker/result/rpcbackend"
	"github.com/gworker/gworker/worker"
)

// env is what a command connects to: the broker, the result backend, a
// producer and, for workers, what sends the messages that follow tasks.
type env struct {
	Broker    *amqptransport.Broker
	Backend   result.Backend
	Producer  *producer.Producer
	Followups worker.Followups
	closers   []func() error
}

// Close releases every connection.
func (e *env) Close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		_ = e.closers[i]()
	}
}

// role tells connect whether the rpc:// backend answers tasks (worker) or
// reads replies (client).
type role int

const (
	roleWorker role = iota
	roleClient
)

func connect(ctx context.Context, f commonFlags, expires time.Duration, log *zap.Logger, r role) (*env, error) {
	scheme := strings.ToLower(f.broker)
	if i := strings.Index(scheme, "://"); i >= 0 {
		scheme = scheme[:i]
	}
	switch scheme {
	case "amqp", "amqps", "pyamqp":
	default:
		return nil, fmt.Errorf("broker %s: only amqp:// (RabbitMQ) is supported", redactAny(f.broker))
	}
	host, _ := os.Hostname()
	dctx := ctx
	if r == roleClient {
		// A worker waits for its broker as long as it takes (as Celery
		// retries on start-up); a command gives up and says why.
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, clientConnectTimeout)
		defer cancel()
	}
	b, err := amqptransport.Dial(dctx, amqptransport.Config{URL: f.broker, Logger: log, ConnectionName: "gworker@" + host})
	if err != nil {
		return nil, fmt.Errorf("broker %s: %w", amqptransport.RedactURL(f.broker), err)
	}
	e := &env{Broker: b}
	e.closers = append(e.closers, b.Close)

	replyTo := producer.NewID()
	switch {
	case f.backend == "" || f.backend == "disabled://":
	case strings.HasPrefix(f.backend, "redis://") || strings.HasPrefix(f.backend, "rediss://"):
		opts := redisbackend.Options{Expires: expires, Logger: log}
		if expires == 0 {
			opts.NoExpiry = true
		}
		rb, err := redisbackend.Open(f.backend, opts)
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("result backend %s: %w", redactAny(f.backend), err)
		}
		e.Backend = rb
		e.closers = append(e.closers, rb.Close)
	case strings.HasPrefix(f.backend, "rpc://"):
		if r == roleWorker {
			e.Backend = rpcbackend.NewWorkerSide(b)
		} else {
			rb, err := rpcbackend.NewAMQP(ctx, b, rpcbackend.Options{ReplyTo: replyTo, Expires: expires, Logger: log})
			if err != nil {
				e.Close()
				return nil, fmt.Errorf("result backend rpc://: %w", err)
			}
			e.Backend = rb
			e.closers = append(e.closers, rb.Close)
		}
	default:
		e.Close()
		return nil, fmt.Errorf("result backend %s: only redis:// and rpc:// are supported", redactAny(f.backend))
	}
	e.Producer = producer.New(b, producer.Options{Backend: e.Backend, DefaultQueue: f.defaultQueue, ReplyTo: replyTo, Logger: log})
	e.Followups = worker.NewFollowups(e.Producer, e.Backend, log)
	return e, nil
}

// redactAny hides the password of any URL, as Celery prints them:
// redis://:**@host:6379/0.
func redactAny(raw string) string { return redact.URL(raw) }

// clientConnectTimeout bounds how long call and result try to reach the
// broker before they fail.
const clientConnectTimeout = 20 * time.Second

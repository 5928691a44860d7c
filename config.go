package gworker

import (
	"fmt"

	"github.com/gworker/gworker/config"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/transport"
	"github.com/gworker/gworker/worker"
)

// Config configures an App; see package config, its home, for the fields,
// their defaults and their validation.
type Config = config.Config

// ConfigError is a Config that New refuses, with every reason found
// (config.Error).
type ConfigError = config.Error

// ErrInvalidConfig is matched by every *ConfigError with errors.Is.
var ErrInvalidConfig = config.ErrInvalid

// Errors of broker and backend URLs.
var (
	// ErrUnsupportedBroker: the broker URL's scheme names no transport
	// of the App (DefaultTransports, or WithTransports).
	ErrUnsupportedBroker = transport.ErrUnsupportedScheme
	// ErrUnsupportedBackend: the result backend URL's scheme names no
	// backend of the App (DefaultResultBackends, or WithResultBackends).
	ErrUnsupportedBackend = result.ErrUnsupportedBackend
)

// Defaults of Config, as Celery's. Their home is package config, which
// names every default of a node.
const (
	// DefaultBrokerURL is used when neither Config, --broker nor
	// CELERY_BROKER_URL name a broker.
	DefaultBrokerURL = config.DefaultBrokerURL
	// DefaultQueue is the queue consumed and sent to when none is named
	// (task_default_queue).
	DefaultQueue = config.DefaultQueue
	// DefaultPrefetchMultiplier: prefetch = concurrency × this
	// (worker_prefetch_multiplier).
	DefaultPrefetchMultiplier = config.DefaultPrefetchMultiplier
	// DefaultResultExpires is how long results are kept (result_expires).
	DefaultResultExpires = config.DefaultResultExpires
	// DefaultHostname is the node name pattern (celery worker -n).
	DefaultHostname = config.DefaultHostname
	// DefaultHeartbeatInterval is how often worker-heartbeat events are
	// sent (--heartbeat-interval).
	DefaultHeartbeatInterval = config.DefaultHeartbeatInterval
	// DefaultLogLevel is the CLI's and the built logger's level.
	DefaultLogLevel = config.DefaultLogLevel
	// DefaultStopTimeout bounds how long a warm shutdown waits for the
	// broker to confirm the consumer's cancellation.
	DefaultStopTimeout = config.DefaultStopTimeout
)

// ExpandHostname expands %h (host name), %n (its first label), %d (its
// domain) and %% as celery worker -n does (config.ExpandHostname).
func ExpandHostname(s string) string { return config.ExpandHostname(s) }

// validate is cfg.Validate plus what package config, below the App,
// cannot check: the syntax of RateLimits, which package worker parses, and
// that the URLs' schemes have a transport and a backend in the App's
// registries.
func validate(cfg Config, reg registries) error {
	var problems []string
	if err := cfg.Validate(); err != nil {
		ce, ok := err.(*ConfigError)
		if !ok {
			return err
		}
		problems = append(problems, ce.Problems...)
	}
	problems = append(problems, checkURLs(cfg, reg)...)
	for name, rate := range cfg.RateLimits {
		if _, err := worker.ParseRateLimit(rate); err != nil {
			problems = append(problems, fmt.Sprintf("RateLimits[%q]: %v", name, err))
		}
	}
	if len(problems) > 0 {
		return &ConfigError{Problems: problems}
	}
	return nil
}

package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/gworker/gworker/internal/redact"
)

// Environment variables that name the broker and the result backend when
// Config leaves them empty, as Celery's.
const (
	EnvBrokerURL     = "CELERY_BROKER_URL"
	EnvResultBackend = "CELERY_RESULT_BACKEND"
)

// Errors of broker and result backend URLs.
var (
	// ErrUnsupportedBroker: the broker URL's scheme names no transport
	// gworker has.
	ErrUnsupportedBroker = errors.New("unsupported broker")
	// ErrUnsupportedBackend: the result backend URL's scheme names no
	// backend gworker has.
	ErrUnsupportedBackend = errors.New("unsupported result backend")
)

// ResolvedBrokerURL returns the broker a node of c connects to:
// BrokerURL, else $CELERY_BROKER_URL, else DefaultBrokerURL.
func (c Config) ResolvedBrokerURL() string {
	if c.BrokerURL != "" {
		return c.BrokerURL
	}
	if v := os.Getenv(EnvBrokerURL); v != "" {
		return v
	}
	return DefaultBrokerURL
}

// ResolvedResultBackend returns the result backend a node of c connects
// to: ResultBackend, else $CELERY_RESULT_BACKEND; "" (also for
// disabled://) means results are not stored.
func (c Config) ResolvedResultBackend() string {
	v := c.ResultBackend
	if v == "" {
		v = os.Getenv(EnvResultBackend)
	}
	if strings.HasPrefix(strings.ToLower(v), "disabled:") {
		return ""
	}
	return v
}

// URLScheme returns the scheme of a broker or backend URL in lower case
// ("amqp", "redis", ...), or "" when it has none.
func URLScheme(raw string) string {
	s := strings.ToLower(raw)
	if i := strings.Index(s, "://"); i >= 0 {
		return s[:i]
	}
	return ""
}

// CheckBrokerURL returns an error wrapping ErrUnsupportedBroker unless the
// URL names a transport gworker has: amqp, amqps, pyamqp, redis, rediss,
// sentinel. The error shows the URL without its password.
func CheckBrokerURL(raw string) error {
	switch URLScheme(raw) {
	case "amqp", "amqps", "pyamqp", "redis", "rediss", "sentinel":
		return nil
	}
	return fmt.Errorf("broker %s: %w (amqp://, amqps://, redis://, rediss://, sentinel://)", redact.URL(raw), ErrUnsupportedBroker)
}

// IsRedisBroker reports whether the broker URL names kombu's Redis
// transport (redis, rediss or sentinel).
func IsRedisBroker(raw string) bool {
	switch URLScheme(raw) {
	case "redis", "rediss", "sentinel":
		return true
	}
	return false
}

// CheckResultBackendURL returns an error wrapping ErrUnsupportedBackend
// unless the URL names a backend gworker has: redis, rediss, rpc,
// disabled.
func CheckResultBackendURL(raw string) error {
	switch URLScheme(raw) {
	case "redis", "rediss", "rpc", "disabled":
		return nil
	}
	return fmt.Errorf("result backend %s: %w (redis://, rediss://, rpc://, disabled://)", redact.URL(raw), ErrUnsupportedBackend)
}

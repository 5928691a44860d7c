package config

import (
	"os"
	"strings"
)

// Environment variables that name the broker and the result backend when
// Config leaves them empty, as Celery's.
const (
	EnvBrokerURL     = "CELERY_BROKER_URL"
	EnvResultBackend = "CELERY_RESULT_BACKEND"
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

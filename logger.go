package gworker

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/gworker/gworker/internal/logging"
)

// NewLogger returns a zap logger writing lines shaped like Celery's to
// out, which log scrapers written for Celery read unchanged:
//
//	[2026-01-02 03:04:05,678: INFO/MainProcess] Task tasks.add[...] received
//
// Fields follow the message; durations print as 1.5s, not nanoseconds.
func NewLogger(level string, out io.Writer) (*zap.Logger, error) { return logging.New(level, out) }

// redisLogger routes go-redis's own log lines (reconnects, pool errors)
// through zap instead of the standard library's logger on stderr.
type redisLogger struct{ log *zap.Logger }

func (r redisLogger) Printf(_ context.Context, format string, v ...any) {
	r.log.Warn("redis: " + strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// routeRedisLogs sends go-redis's log lines to log. go-redis keeps one
// logger per process, so the last App to connect to Redis owns it.
func routeRedisLogs(log *zap.Logger) { redis.SetLogger(redisLogger{log}) }

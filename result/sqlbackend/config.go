package sqlbackend

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/internal/redact"
)

// Defaults of Config.
const (
	// DefaultExpires is Celery's result_expires: one day.
	DefaultExpires = 24 * time.Hour
	// DefaultMaxOpenConns bounds the connection pool.
	DefaultMaxOpenConns = 8
	// DefaultStatementTimeout bounds one statement on the server
	// (PostgreSQL statement_timeout, MariaDB max_statement_time).
	DefaultStatementTimeout = 30 * time.Second
	// DefaultLockTimeout bounds a wait for a row lock (PostgreSQL
	// lock_timeout, InnoDB innodb_lock_wait_timeout); a write that runs
	// out is retried.
	DefaultLockTimeout = 10 * time.Second
	// DefaultRetryFor is how long a write or read keeps being retried
	// while the server is unreachable or a lock cannot be had.
	DefaultRetryFor = 2 * time.Minute
	// DefaultPollInterval is the first interval of WaitReady's polling;
	// it grows by half up to DefaultMaxPollInterval while nothing
	// changes, and starts again when a result arrives.
	DefaultPollInterval = 50 * time.Millisecond
	// DefaultMaxPollInterval caps the polling interval (Celery polls the
	// database every 0.5 s).
	DefaultMaxPollInterval = time.Second
	// DefaultMaxBatch bounds the results written by one statement.
	DefaultMaxBatch = 256
)

// Table names of the two layouts.
const (
	CeleryTaskTable  = "celery_taskmeta"
	CeleryGroupTable = "celery_tasksetmeta"
	DjangoTaskTable  = "django_celery_results_taskresult"
	DjangoGroupTable = "django_celery_results_groupresult"
	DjangoChordTable = "django_celery_results_chordcounter"
)

// Errors of configuration and of the tables.
var (
	// ErrBadURL: the URL does not name a supported database.
	ErrBadURL = errors.New("sqlbackend: unsupported database URL")
	// ErrNotMigrated: the django-celery-results tables are missing; they
	// are made by Django's manage.py migrate, never by gworker.
	ErrNotMigrated = errors.New("sqlbackend: the django-celery-results tables do not exist: run `python manage.py migrate django_celery_results` first")
	// ErrBadRow: a row holds a value of the wrong type or shape.
	ErrBadRow = errors.New("sqlbackend: invalid row")
)

// Config configures a backend. Only URL is required.
type Config struct {
	// URL is the database: db+postgresql://user:pass@host:port/db or
	// db+mysql://... for Celery's tables, django-db+postgresql://... or
	// django-db+mysql://... for django-celery-results' tables. A +driver
	// suffix (db+postgresql+psycopg2://, db+mysql+pymysql://) is accepted
	// and ignored; mariadb:// is mysql://. Query parameters are passed to
	// the driver (sslmode=..., for example).
	URL string
	// Expires is result_expires: Cleanup deletes results finished longer
	// ago. Zero means DefaultExpires; NoExpiry or a negative value turns
	// Cleanup into a no-op, as Celery does with result_expires=None.
	Expires  time.Duration
	NoExpiry bool
	// TaskTable and GroupTable rename Celery's tables
	// (database_table_names {"task": ..., "group": ...}); TaskSchema and
	// GroupSchema put them in a schema (database_table_schemas). They
	// apply to the db+ layout only.
	TaskTable, GroupTable   string
	TaskSchema, GroupSchema string
	// MaxOpenConns bounds the pool (default DefaultMaxOpenConns).
	MaxOpenConns int
	// StatementTimeout and LockTimeout are set on every connection
	// (defaults DefaultStatementTimeout, DefaultLockTimeout).
	StatementTimeout, LockTimeout time.Duration
	// RetryFor is how long transient errors (connection lost or refused,
	// server shutting down, deadlock, lock or statement timeout) are
	// retried, with growing pauses, before an operation fails (default
	// DefaultRetryFor). The caller's context still bounds every wait.
	RetryFor time.Duration
	// PollInterval and MaxPollInterval shape WaitReady's polling
	// (defaults DefaultPollInterval, DefaultMaxPollInterval).
	PollInterval, MaxPollInterval time.Duration
	// MaxBatch bounds how many concurrent Stores share one statement
	// (default DefaultMaxBatch); NoBatching writes every Store alone.
	MaxBatch   int
	NoBatching bool
	// Logger receives warnings about retries (default: none).
	Logger *zap.Logger
}

func (c Config) withDefaults() Config {
	if c.Expires == 0 {
		c.Expires = DefaultExpires
	}
	if c.Expires < 0 {
		c.NoExpiry = true
	}
	if c.MaxOpenConns <= 0 {
		c.MaxOpenConns = DefaultMaxOpenConns
	}
	if c.StatementTimeout <= 0 {
		c.StatementTimeout = DefaultStatementTimeout
	}
	if c.LockTimeout <= 0 {
		c.LockTimeout = DefaultLockTimeout
	}
	if c.RetryFor <= 0 {
		c.RetryFor = DefaultRetryFor
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.MaxPollInterval <= 0 {
		c.MaxPollInterval = DefaultMaxPollInterval
	}
	if c.MaxPollInterval < c.PollInterval {
		c.MaxPollInterval = c.PollInterval
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// Layout names the tables a URL selects.
type Layout int

// Layouts.
const (
	// LayoutCelery is Celery's SQLAlchemy backend (db+ URLs).
	LayoutCelery Layout = iota + 1
	// LayoutDjango is django-celery-results (django-db+ URLs).
	LayoutDjango
)

// dialect is the database server family.
type dialect int

const (
	postgres dialect = iota + 1
	mysql
)

// target is a parsed URL.
type target struct {
	layout  Layout
	dialect dialect
	u       *url.URL // scheme postgres:// or mysql://, driver suffix removed
}

// LayoutOf returns the layout a result backend URL selects, or an error
// wrapping ErrBadURL. It does not contact the server.
func LayoutOf(raw string) (Layout, error) {
	t, err := parseURL(raw)
	if err != nil {
		return 0, err
	}
	return t.layout, nil
}

func parseURL(raw string) (*target, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, fmt.Errorf("%w: %s: no scheme", ErrBadURL, redact.URL(raw))
	}
	parts := strings.Split(strings.ToLower(scheme), "+")
	t := &target{}
	switch parts[0] {
	case "db":
		t.layout = LayoutCelery
	case "django-db":
		t.layout = LayoutDjango
	default:
		return nil, fmt.Errorf("%w: %s: scheme must start with db+ or django-db+", ErrBadURL, redact.URL(raw))
	}
	if len(parts) < 2 || len(parts) > 3 {
		return nil, fmt.Errorf("%w: %s: want %s+postgresql:// or %s+mysql://", ErrBadURL, redact.URL(raw), parts[0], parts[0])
	}
	switch parts[1] {
	case "postgresql", "postgres", "pgsql":
		t.dialect = postgres
	case "mysql", "mariadb":
		t.dialect = mysql
	default:
		return nil, fmt.Errorf("%w: %s: database %q (postgresql or mysql)", ErrBadURL, redact.URL(raw), parts[1])
	}
	u, err := url.Parse("x://" + rest)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadURL, redact.Error(err, raw))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: %s: no host", ErrBadURL, redact.URL(raw))
	}
	if strings.Trim(u.Path, "/") == "" {
		return nil, fmt.Errorf("%w: %s: no database name", ErrBadURL, redact.URL(raw))
	}
	t.u = u
	return t, nil
}

func (t *target) database() string { return strings.Trim(t.u.Path, "/") }

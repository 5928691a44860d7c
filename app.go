// Package gworker is a Celery worker and client in Go: it runs registered Go
// functions for the task messages Python's Celery sends, stores their
// results where Python's AsyncResult reads them, and sends tasks, groups,
// chains and chords that Python workers (or other gworker nodes) run.
//
// An App holds the wiring: broker and result backend from URLs, the
// producer, what runs after a task (callbacks, chains, chords, retries)
// and the builtin tasks. A service embeds it in a few lines:
//
//	app := gworker.New(gworker.Config{})
//	app.MustRegister("tasks.double", double, gworker.Params("x"))
//	app.Main() // the whole gworker command line: worker, call, result
//
// or drives it from Go with Start and Stop. Its Config and every default
// live in package config, its command line in package cli. The packages
// below it (protocol, amqptransport, result, producer, canvas, worker)
// stay usable on their own.
package gworker

import (
	"context"
	"errors"
	"os"
	"sync"

	"go.uber.org/zap"

	"github.com/gworker/gworker/internal/logging"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// App is a gworker node and client: a registry of Go tasks, the broker
// and result backend connections, and a worker once started. Its methods
// are safe for concurrent use.
type App struct {
	cfg      Config
	registry *worker.Registry
	reg      registries // transports and result backends, by URL scheme

	mu      sync.Mutex
	conn    *conn // nil until connected
	logger  *zap.Logger
	running *run // the started worker, nil before Start
}

// NewApp checks cfg and returns an App, or a *ConfigError (errors.Is
// ErrInvalidConfig). Options give it transports or result backends of
// its own (WithTransports, WithResultBackends) or more of them
// (WithResultBackend: the SQL backends are registered so).
func NewApp(cfg Config, opts ...Option) (*App, error) {
	reg := newRegistries(opts)
	cfg = cfg.WithDefaults()
	if err := validate(cfg, reg); err != nil {
		return nil, err
	}
	return &App{cfg: cfg, registry: worker.NewRegistry(), reg: reg}, nil
}

// New is NewApp for a Config known to be valid: it panics with the
// *ConfigError otherwise, as regexp.MustCompile does.
func New(cfg Config, opts ...Option) *App {
	a, err := NewApp(cfg, opts...)
	if err != nil {
		panic(err)
	}
	return a
}

// Config returns the App's Config with its defaults filled in.
func (a *App) Config() Config { return a.cfg }

// Registry returns the App's task registry.
func (a *App) Registry() *worker.Registry { return a.registry }

// log returns the App's logger, building it on first use.
func (a *App) log() *zap.Logger {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logLocked()
}

func (a *App) logLocked() *zap.Logger {
	if a.logger == nil {
		if a.cfg.Logger != nil {
			a.logger = a.cfg.Logger
		} else {
			l, err := logging.NewFormat(a.cfg.LogLevel, a.cfg.LogFormat, os.Stderr)
			if err != nil { // validated in New
				l = zap.NewNop()
			}
			a.logger = l
		}
	}
	return a.logger
}

// Connect connects to the broker and the result backend if the App is not
// connected yet. SendTask, Start and the other methods that need the
// broker call it; calling it first separates connection errors from the
// rest. It waits for the broker until ctx ends.
func (a *App) Connect(ctx context.Context) error {
	_, err := a.connect(ctx, roleClient)
	return err
}

func (a *App) connect(ctx context.Context, r role) (*conn, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn != nil {
		if r == roleWorker && a.conn.role != roleWorker {
			return nil, errors.New("gworker: the App connected as a client first; Start needs a fresh App")
		}
		return a.conn, nil
	}
	c, err := dial(ctx, a.cfg, a.reg, a.logLocked(), r)
	if err != nil {
		return nil, err
	}
	a.conn = c
	return c, nil
}

// Close releases the broker and backend connections. It does not stop a
// started worker: use Stop, which closes them too.
func (a *App) Close() error {
	a.mu.Lock()
	c := a.conn
	a.conn = nil
	a.mu.Unlock()
	if c == nil {
		return nil
	}
	return c.close()
}

// Producer returns the App's producer, connecting first if needed. Canvas
// primitives take it: canvas.Group(...).ApplyAsync(ctx, p).
func (a *App) Producer(ctx context.Context) (*producer.Producer, error) {
	c, err := a.connect(ctx, roleClient)
	if err != nil {
		return nil, err
	}
	return c.producer, nil
}

// Backend returns the App's result backend (nil when results are
// disabled), connecting first if needed.
func (a *App) Backend(ctx context.Context) (result.Backend, error) {
	c, err := a.connect(ctx, roleClient)
	if err != nil {
		return nil, err
	}
	return c.backend, nil
}

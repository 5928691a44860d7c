package gworker

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/config"
	"github.com/gworker/gworker/control"
	"github.com/gworker/gworker/followup"
	"github.com/gworker/gworker/metrics"
	"github.com/gworker/gworker/transport"
	"github.com/gworker/gworker/worker"
)

// Errors of the App's lifecycle.
var (
	// ErrAlreadyStarted: Start was called on an App that was started
	// before; an App runs one worker in its life.
	ErrAlreadyStarted = errors.New("gworker: the App was already started")
	// ErrNotStarted: Stop was called on an App that was never started.
	ErrNotStarted = errors.New("gworker: the App was not started")
)

// run is a started worker.
type run struct {
	w      *worker.Worker
	plane  *opsPlane        // events, remote control, mingle
	mx     *metrics.Metrics // nil without MetricsAddr
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed
}

// Start connects (waiting for the broker until ctx ends), starts the
// worker on the App's queues and returns once it consumes them. The worker
// then runs until Stop, independently of ctx. The App registers Celery's
// builtin tasks (celery.chord_unlock) itself.
func (a *App) Start(ctx context.Context) error {
	a.mu.Lock()
	if a.running != nil {
		a.mu.Unlock()
		return ErrAlreadyStarted
	}
	r := &run{done: make(chan struct{})}
	a.running = r
	a.mu.Unlock()

	// The probes answer from before the broker is reached until the
	// worker has stopped: /healthz 200 throughout (an outage or a drain
	// must not make the process look unsound), /readyz 200 only while
	// consuming.
	var (
		mx         *metrics.Metrics
		late       *lateSources
		stopProbes = func() {}
	)
	if a.cfg.MetricsAddr != "" {
		late = &lateSources{}
		mx = late.metrics(a.log())
		pctx, pcancel := context.WithCancel(context.Background())
		addr, err := mx.Serve(pctx, a.cfg.MetricsAddr)
		if err != nil {
			pcancel()
			err = fmt.Errorf("metrics: %w", err)
			r.finish(err)
			return err
		}
		stopProbes = pcancel
		a.log().Info("metrics, health and readiness on http://" + addr.String() + "/metrics, /healthz, /readyz")
	}
	runCtx, cancel := context.WithCancel(context.Background())
	r.cancel = func() {
		if mx != nil {
			mx.Drain()
		}
		cancel()
	}
	w, plane, err := a.newWorker(ctx, r.cancel, late)
	if err == nil && mx != nil {
		mx.SetWorker(w)
	}
	if err == nil {
		r.w, r.plane, r.mx = w, plane, mx
		// The plane answers remote control and sends worker-online
		// (after mingle) before the worker consumes.
		if err = plane.Start(ctx, w); err != nil {
			err = fmt.Errorf("remote control and events: %w", err)
		}
	}
	if err != nil {
		cancel()
		stopProbes()
		r.finish(err)
		_ = a.Close()
		return err
	}
	go func() {
		defer stopProbes()
		err := w.Run(runCtx)
		sctx, scancel := context.WithTimeout(context.Background(), DefaultStopTimeout)
		if perr := plane.Stop(sctx); perr != nil {
			a.log().Warn("stopping remote control and events: " + perr.Error())
		}
		scancel()
		cerr := a.Close()
		if err == nil {
			err = cerr
		}
		r.finish(err)
	}()
	select {
	case <-w.Ready():
		return nil
	case <-r.done:
		return r.err
	case <-ctx.Done():
		cancel()
		<-r.done
		return ctx.Err()
	}
}

func (r *run) finish(err error) {
	r.err = err
	close(r.done)
}

// newWorker connects and builds the worker and its operations plane from
// the Config; shutdown is what the remote shutdown command calls.
func (a *App) newWorker(ctx context.Context, shutdown func(), late *lateSources) (w *worker.Worker, plane *opsPlane, err error) {
	c, err := a.connect(ctx, roleWorker)
	if err != nil {
		return nil, nil, err
	}
	log := a.log()
	log.Info("Connected to " + RedactURL(c.brokerURL))
	if _, err := a.registry.Lookup(followup.ChordUnlockTask); err != nil {
		if err := followup.RegisterBuiltins(a.registry, c.producer, c.backend, log); err != nil {
			return nil, nil, err
		}
	}
	for name, rate := range a.cfg.RateLimits {
		if err := a.registry.SetRateLimit(name, rate); err != nil {
			return nil, nil, err
		}
	}
	queues := a.cfg.ConsumedQueues()
	admin := c.broker
	if a.cfg.Purge {
		for _, q := range queues {
			if err := admin.DeclareTaskQueue(ctx, q); err != nil {
				return nil, nil, fmt.Errorf("purge %s: %w", q, err)
			}
			n, err := admin.PurgeQueue(ctx, q)
			if err != nil {
				return nil, nil, fmt.Errorf("purge %s: %w", q, err)
			}
			log.Warn(fmt.Sprintf("Purged %d messages from queue %s.", n, q))
		}
	}
	hostname := ExpandHostname(a.cfg.Hostname)
	plane, err = newOpsPlane(planeConfig{
		Transport:         c.broker,
		Hostname:          hostname,
		TaskEvents:        a.cfg.TaskEvents,
		HeartbeatInterval: a.cfg.HeartbeatInterval,
		WithoutHeartbeat:  a.cfg.WithoutHeartbeat,
		WithoutMingle:     a.cfg.WithoutMingle,
		ControlQueue:      control.QueueOptions{Durable: a.cfg.ControlQueueDurable, Exclusive: a.cfg.ControlQueueExclusive},
		StateDB:           a.cfg.StateDB,
		BrokerURL:         c.brokerURL,
		Conf:              celeryConf(a.cfg, c.brokerURL, a.cfg.ResolvedResultBackend(), queues),
		Version:           Version,
		AppName:           a.cfg.AppName,
		AppVersion:        a.cfg.AppVersion,
		Shutdown:          shutdown,
		Logger:            log,
	})
	if err != nil {
		return nil, nil, err
	}
	var sink worker.EventSink = plane.Sink()
	if late != nil {
		late.attach(plane, c, queues)
		sink = late.mx
	}
	accept, _ := config.AcceptContentTypes(a.cfg.Accept) // validated in New
	w, err = worker.New(worker.Config{
		Registry:           a.registry,
		Broker:             c.broker,
		Backend:            c.backend,
		Followups:          c.followups,
		Queues:             queues,
		Concurrency:        a.cfg.Concurrency,
		PrefetchMultiplier: a.cfg.PrefetchMultiplier,
		AcksLate:           a.cfg.AcksLate,
		MaxRedeliveries:    a.cfg.MaxRedeliveries,
		MaxBodySize:        a.cfg.MaxMessageSize,
		MaxBodyValues:      a.cfg.MaxMessageValues,
		ETAHorizon:         a.cfg.ETAHorizon,
		MaxHeldETA:         a.cfg.ETATaskLimit,
		Hostname:           ExpandHostname(a.cfg.Hostname),
		Accept:             accept,
		ResultExtended:     a.cfg.ResultExtended,
		TrackStarted:       a.cfg.TrackStarted,
		TimeLimit:          a.cfg.TimeLimit,
		SoftTimeLimit:      a.cfg.SoftTimeLimit,
		Logger:             log,
		Events:             sink,
		Revoked:            plane.Revoked(),
		Middleware:         a.reg.middleware,
	})
	if err != nil {
		return nil, nil, err
	}
	return w, plane, nil
}

// ready is the readiness check of MetricsAddr: the broker tells the length
// of the first queue and the result backend answers a read.
func ready(ctx context.Context, c *conn, queues []string) error {
	if len(queues) > 0 {
		if _, err := c.broker.QueueLength(ctx, queues[0]); err != nil {
			return fmt.Errorf("broker: %w", err)
		}
	}
	if c.backend != nil {
		if _, err := c.backend.Get(ctx, "gworker-readiness-probe"); err != nil {
			return fmt.Errorf("result backend: %w", err)
		}
	}
	return nil
}

// Stop shuts the worker down warmly: it stops consuming, returns
// prefetched and waiting (ETA) messages to the broker, and waits for the
// running tasks to finish until ctx ends; then it cancels their contexts
// (a cold shutdown) and waits for the worker to let go of them. The
// connections are closed. It returns the error that stopped the worker,
// or ctx's error when the shutdown had to turn cold.
func (a *App) Stop(ctx context.Context) error {
	a.mu.Lock()
	r := a.running
	a.mu.Unlock()
	if r == nil {
		return ErrNotStarted
	}
	if r.cancel != nil {
		r.cancel()
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		a.log().Warn("worker: Cold shutdown: cancelling the running tasks")
		if r.w != nil {
			r.w.Terminate()
		}
		<-r.done
		return ctx.Err()
	}
}

// Stopped is closed once a started worker has stopped, by Stop or because
// the broker went away for good; Err then says why. Before Start it is a
// channel that never closes.
func (a *App) Stopped() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.running == nil {
		return nil
	}
	return a.running.done
}

// Err returns the error that stopped the worker: nil after a clean Stop
// or while it runs.
func (a *App) Err() error {
	a.mu.Lock()
	r := a.running
	a.mu.Unlock()
	if r == nil {
		return nil
	}
	select {
	case <-r.done:
		return r.err
	default:
		return nil
	}
}

// Hostname returns the node name, expanded (celery@host).
func (a *App) Hostname() string { return ExpandHostname(a.cfg.Hostname) }

// Stats returns the running worker's counters (zero before Start).
func (a *App) Stats() worker.Stats {
	a.mu.Lock()
	r := a.running
	a.mu.Unlock()
	if r == nil || r.w == nil {
		return worker.Stats{}
	}
	return r.w.Stats()
}

// coldShutdown gives running tasks the soft shutdown timeout, then
// cancels them. As Celery 5.5, an idle worker skips the soft shutdown
// unless Config.EnableSoftShutdownOnIdle; idle means no task runs and, as
// gworker holds finished tasks' results while the result store is down,
// no result waits to be stored.
func (a *App) coldShutdown() {
	a.mu.Lock()
	r := a.running
	a.mu.Unlock()
	if r == nil || r.w == nil {
		return
	}
	idle := r.w.Inspector().ActiveCount() == 0 && r.w.Stats().PendingResults == 0
	if d := a.cfg.SoftShutdownTimeout; d > 0 && idle && !a.cfg.EnableSoftShutdownOnIdle {
		a.log().Info("worker: Soft shutdown skipped: no task is running (worker_enable_soft_shutdown_on_idle is off)")
	} else if d > 0 {
		a.log().Warn("worker: Soft shutdown: running tasks have "+d.String()+" to finish", zap.Duration("timeout", d))
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-r.done:
			return
		case <-t.C:
		}
	}
	a.log().Warn("worker: Cold shutdown: cancelling the running tasks")
	r.w.Terminate()
}

// lateSources are what the metrics of a node read from it, filled in once
// it has connected: the metrics and their probes are served before that.
type lateSources struct {
	mx     *metrics.Metrics
	sink   atomic.Pointer[worker.EventSink]
	plane  atomic.Pointer[opsPlane]
	conn   atomic.Pointer[conn]
	queues atomic.Pointer[[]string]
}

// metrics builds the node's metrics on the sources.
func (l *lateSources) metrics(log *zap.Logger) *metrics.Metrics {
	l.mx = metrics.New(metrics.Config{Next: l, Logger: log,
		EventsDropped: func() int64 {
			if p := l.plane.Load(); p != nil {
				return p.Events().Dropped()
			}
			return 0
		},
		BrokerReconnects: func() uint64 {
			if c := l.conn.Load(); c != nil {
				if rc, ok := c.broker.(transport.ReconnectCounter); ok {
					return rc.Reconnects()
				}
			}
			return 0
		},
		StaleAcks: func() int64 {
			if c := l.conn.Load(); c != nil {
				if sc, ok := c.broker.(transport.StaleAckCounter); ok {
					return sc.StaleAcks()
				}
			}
			return 0
		},
		Ready: func(ctx context.Context) error {
			c, q := l.conn.Load(), l.queues.Load()
			if c == nil || q == nil {
				return metrics.ErrNotConsuming
			}
			return ready(ctx, c, *q)
		},
	})
	return l.mx
}

// attach gives the metrics the connected node.
func (l *lateSources) attach(p *opsPlane, c *conn, queues []string) {
	sink := p.Sink()
	l.sink.Store(&sink)
	l.plane.Store(p)
	l.conn.Store(c)
	l.queues.Store(&queues)
}

// TaskEvent passes a counted event on to the plane (worker.EventSink).
func (l *lateSources) TaskEvent(ev *worker.TaskEvent) {
	if s := l.sink.Load(); s != nil {
		(*s).TaskEvent(ev)
	}
}

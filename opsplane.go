package gworker

// The operations plane around a worker, wired by the App: the event
// dispatcher, the remote control node, mingle at start-up and the revoked
// ids kept in --statedb.
//
// Order of use: newOpsPlane (before the worker exists: it gives the worker
// its event sink and revoked set), Start (once the worker is built), then
// Stop after the worker's Run returned.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/config"
	"github.com/gworker/gworker/control"
	"github.com/gworker/gworker/events"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

// planeConfig configures the plane. Transport and Hostname are required.
type planeConfig struct {
	// Transport carries remote control; Events carries events and
	// defaults to Transport when it is an events.Publisher.
	Transport control.Transport
	Events    events.Publisher
	Hostname  string
	// TaskEvents turns task events on (-E).
	TaskEvents bool
	// HeartbeatInterval is the heartbeat period; 0 means 2 s.
	HeartbeatInterval time.Duration
	// WithoutHeartbeat sends no worker-heartbeat events.
	WithoutHeartbeat bool
	// WithoutMingle skips the start-up sync with other nodes.
	WithoutMingle bool
	// WithoutControl answers no remote control commands.
	WithoutControl bool
	// ControlQueue says how the node's pidbox queue, and mingle's reply
	// queue, are declared (Celery 5.6's control_queue_durable and
	// control_queue_exclusive).
	ControlQueue control.QueueOptions
	// MingleTimeout bounds mingle; default 1 s.
	MingleTimeout time.Duration
	// StateDB is the file the revoked ids persist in (--statedb); empty
	// keeps them in memory only.
	StateDB string
	// BrokerURL is reported (without its password) by `inspect stats`.
	BrokerURL string
	// Conf is reported by `inspect conf`.
	Conf protocol.Dict
	// AppName and AppVersion name the program that embeds gworker.
	AppName, AppVersion string
	// Version is the software version events and reports carry.
	Version string
	// Shutdown is called by the shutdown command.
	Shutdown func()
	Logger   *zap.Logger
}

// Bounds of the retries of a control node whose pidbox queue the broker
// refused.
const (
	controlRetryMin = time.Second
	controlRetryMax = time.Minute
)

// opsPlane is a running operations plane.
type opsPlane struct {
	cfg     planeConfig
	log     *zap.Logger
	clock   *events.Clock
	revoked *worker.RevokedSet
	events  *events.Dispatcher
	state   planeWorkerState
	started bool

	mu   sync.Mutex
	node *control.Node // nil until it answers
	// stopRetry ends the retries of a refused node; retryDone is closed
	// when they ended. Both nil when there are none.
	stopRetry chan struct{}
	retryDone chan struct{}
}

// planeWorkerState gives the dispatcher the worker's counts once it exists.
type planeWorkerState struct{ w atomic.Pointer[worker.Worker] }

func (s *planeWorkerState) ActiveCount() int {
	if w := s.w.Load(); w != nil {
		return w.Inspector().ActiveCount()
	}
	return 0
}

func (s *planeWorkerState) Processed() int64 {
	if w := s.w.Load(); w != nil {
		return w.Inspector().Processed()
	}
	return 0
}

// New builds the plane and loads the state file.
func newOpsPlane(cfg planeConfig) (*opsPlane, error) {
	if cfg.Transport == nil || cfg.Hostname == "" {
		return nil, errors.New("opsplane: Transport and Hostname are required")
	}
	if cfg.Events == nil {
		p, ok := cfg.Transport.(events.Publisher)
		if !ok {
			return nil, errors.New("opsplane: Events is required when Transport cannot publish events")
		}
		cfg.Events = p
	}
	if cfg.MingleTimeout <= 0 {
		cfg.MingleTimeout = config.DefaultMingleTimeout
	}
	if err := cfg.ControlQueue.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	p := &opsPlane{cfg: cfg, log: log, clock: &events.Clock{}, revoked: worker.NewRevokedSet(0, 0)}
	hb := cfg.HeartbeatInterval
	if cfg.WithoutHeartbeat {
		hb = -1
	}
	d, err := events.New(events.Config{Publisher: cfg.Events, Hostname: cfg.Hostname, HeartbeatInterval: hb,
		TaskEvents: cfg.TaskEvents, State: &p.state, Clock: p.clock, SoftwareVersion: cfg.Version, Logger: log})
	if err != nil {
		return nil, err
	}
	p.events = d
	if cfg.StateDB != "" {
		n, err := control.LoadState(cfg.StateDB, p.revoked)
		var aside *control.StateSetAsideError
		if errors.As(err, &aside) {
			log.Warn(err.Error(), zap.String("statedb", cfg.StateDB), zap.String("set_aside_as", aside.Aside))
		} else if err != nil {
			return nil, err
		}
		if n > 0 {
			log.Info("revoked ids restored from the state file", zap.Int("count", n), zap.String("statedb", cfg.StateDB))
		}
	}
	return p, nil
}

// Sink is the worker's event sink (worker.Config.Events).
func (p *opsPlane) Sink() worker.EventSink { return p.events }

// Revoked is the worker's revoked set (worker.Config.Revoked).
func (p *opsPlane) Revoked() *worker.RevokedSet { return p.revoked }

// Events returns the event dispatcher.
func (p *opsPlane) Events() *events.Dispatcher { return p.events }

// Node returns the control node, nil before Start, with WithoutControl,
// and while the broker refuses its pidbox queue.
func (p *opsPlane) Node() *control.Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.node
}

// Start mingles with the other nodes, starts answering remote control and
// sends worker-online. w must have been built with Sink and Revoked.
//
// A node whose pidbox queue the broker refuses (an exclusive queue of that
// name held by another connection, a permission, a kind of queue the broker
// does not accept) is no reason to stop the worker: the refusal is logged
// at ERROR with the broker's reason, the worker runs its tasks without
// answering remote control, and the node tries again, with growing delays
// up to a minute, until it answers or Stop.
func (p *opsPlane) Start(ctx context.Context, w *worker.Worker) error {
	p.state.w.Store(w)
	if !p.cfg.WithoutMingle {
		client, err := control.NewClient(p.cfg.Transport, p.clock, p.log).WithReplyQueue(p.cfg.ControlQueue)
		if err != nil {
			return err
		}
		nodes, err := client.Mingle(ctx, p.cfg.Hostname, p.revoked, p.cfg.MingleTimeout)
		switch {
		case err != nil:
			p.log.Warn("mingle failed: "+err.Error(), zap.Error(err))
		case len(nodes) == 0:
			p.log.Info("mingle: all alone")
		default:
			p.log.Info("mingle: sync complete", zap.Strings("nodes", nodes))
		}
	}
	if !p.cfg.WithoutControl {
		node, err := control.New(control.Config{Transport: p.cfg.Transport, Worker: w, Events: p.events, Clock: p.clock,
			Hostname: p.cfg.Hostname, Shutdown: p.cfg.Shutdown, Broker: control.BrokerInfo(p.cfg.BrokerURL),
			Conf: p.cfg.Conf, Software: "gworker " + p.cfg.Version, AppName: p.cfg.AppName, AppVersion: p.cfg.AppVersion, Queue: p.cfg.ControlQueue, Logger: p.log})
		if err != nil {
			return err
		}
		if err := node.Start(ctx); err != nil {
			p.refused(node, err)
		} else {
			p.mu.Lock()
			p.node = node
			p.mu.Unlock()
		}
	}
	if err := p.events.Start(ctx); err != nil {
		p.stopControl()
		return err
	}
	p.started = true
	return nil
}

// refused logs why node could not start and retries in the background.
func (p *opsPlane) refused(node *control.Node, err error) {
	queue := control.QueueName(p.cfg.Hostname)
	p.log.Error("remote control: the broker refused this node's pidbox queue; the worker runs its tasks but answers no inspect or control command until the queue is declared, which it keeps trying",
		zap.String("queue", queue), zap.Error(err))
	stop, done := make(chan struct{}), make(chan struct{})
	p.mu.Lock()
	p.stopRetry, p.retryDone = stop, done
	p.mu.Unlock()
	go func() {
		defer close(done)
		delay := controlRetryMin
		last := err.Error()
		for {
			t := time.NewTimer(delay)
			select {
			case <-stop:
				t.Stop()
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			go func() {
				select {
				case <-stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			err := node.Start(ctx)
			cancel()
			if err == nil {
				p.mu.Lock()
				select {
				case <-stop:
					// Stop came first: it will not stop this node.
					p.mu.Unlock()
					_ = node.Stop()
					return
				default:
				}
				p.node = node
				p.mu.Unlock()
				p.log.Info("remote control: the pidbox queue is declared; answering inspect and control commands", zap.String("queue", queue))
				return
			}
			if err.Error() != last {
				last = err.Error()
				p.log.Error("remote control: the broker still refuses this node's pidbox queue", zap.String("queue", queue), zap.Error(err))
			} else {
				p.log.Debug("remote control: the broker still refuses this node's pidbox queue", zap.String("queue", queue), zap.Error(err))
			}
			delay = min(2*delay, controlRetryMax)
		}
	}()
}

// stopControl ends the retries of a refused node and stops the node.
func (p *opsPlane) stopControl() error {
	p.mu.Lock()
	stop, done := p.stopRetry, p.retryDone
	p.stopRetry = nil
	if stop != nil {
		close(stop)
	}
	p.mu.Unlock()
	if done != nil {
		<-done
	}
	p.mu.Lock()
	node := p.node
	p.node = nil
	p.mu.Unlock()
	if node != nil {
		return node.Stop()
	}
	return nil
}

// Stop stops remote control, publishes the queued events and
// worker-offline (until ctx ends) and saves the state file.
func (p *opsPlane) Stop(ctx context.Context) error {
	var errs []error
	errs = append(errs, p.stopControl())
	if p.started {
		p.events.Stop(ctx)
	}
	if p.cfg.StateDB != "" {
		errs = append(errs, control.SaveState(p.cfg.StateDB, p.revoked))
	}
	return errors.Join(errs...)
}

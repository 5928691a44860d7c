package gworker

import (
	"context"
	"errors"

	"github.com/gworker/gworker/control"
)

// ErrConnected is returned by Configure on an App that is connected or
// started: its Config can no longer change.
var ErrConnected = errors.New("gworker: the App is already connected or started")

// Configure replaces the App's Config before the App connects, keeping
// its registered tasks: cfg is defaulted and checked as NewApp does (a
// *ConfigError when it is refused), and its Logger, or one built from its
// LogLevel, becomes the App's. It is how a command line applies its flags
// to the App a program built: tasks that hold the App then send and read
// results on the broker and backend the flags named.
//
// An App that is connected or started keeps its Config and Configure
// returns ErrConnected; an App that was only connected may Close first.
func (a *App) Configure(cfg Config) error {
	cfg = cfg.WithDefaults()
	if err := validate(cfg, a.reg); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.running != nil || a.conn != nil {
		return ErrConnected
	}
	a.cfg, a.logger = cfg, nil // the logger is built anew from cfg
	return nil
}

// Control returns a client of Celery's remote control on the App's broker,
// connecting first if needed: it asks Celery and gworker nodes what
// `celery inspect` asks and steers them as `celery control` does. Each
// call returns a new client; it works while the App is connected. Its
// reply queues are declared as Config.ControlQueueExclusive and
// Config.ControlQueueDurable say.
func (a *App) Control(ctx context.Context) (*control.Client, error) {
	c, err := a.connect(ctx, roleClient)
	if err != nil {
		return nil, err
	}
	log := a.log()
	return control.NewClient(c.broker, nil, log).WithReplyQueue(control.QueueOptions{
		Durable: a.cfg.ControlQueueDurable, Exclusive: a.cfg.ControlQueueExclusive})
}

// ColdShutdown turns a shutdown cold, as a second SIGINT or SIGTERM does
// to celery worker: the running tasks get Config.SoftShutdownTimeout to
// finish, then their contexts are cancelled. An idle worker skips that
// wait unless Config.EnableSoftShutdownOnIdle. It returns when they have
// finished or been cancelled. It does not stop the consumer, which Stop
// does; before Start it does nothing.
func (a *App) ColdShutdown() { a.coldShutdown() }

package result

import "time"

// GetOption configures Get, Join and JoinNative.
type GetOption func(*getConfig)

type getConfig struct {
	timeout     time.Duration
	propagate   bool
	interval    time.Duration
	disableSync bool
}

// DefaultInterval is the polling interval of backends that cannot wait
// natively (Celery's 0.5 s).
const DefaultInterval = 500 * time.Millisecond

func newGetConfig(opts []GetOption) getConfig {
	c := getConfig{propagate: true, interval: DefaultInterval, disableSync: true}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.interval <= 0 {
		c.interval = DefaultInterval
	}
	return c
}

// WithTimeout bounds the whole wait; when it runs out the call returns
// ErrTimeout. Zero or negative means no bound (the context still applies).
func WithTimeout(d time.Duration) GetOption { return func(c *getConfig) { c.timeout = d } }

// WithPropagate chooses whether a failed task makes the call fail (true,
// the default) or its *TaskError is returned as the value (false).
func WithPropagate(p bool) GetOption { return func(c *getConfig) { c.propagate = p } }

// WithInterval sets the polling interval used with backends that are not
// a NativeJoiner (default DefaultInterval).
func WithInterval(d time.Duration) GetOption { return func(c *getConfig) { c.interval = d } }

// WithDisableSyncSubtasks(false) allows this call to wait inside a task
// (see MarkTask). The default, true, refuses with ErrWouldBlock.
func WithDisableSyncSubtasks(disable bool) GetOption {
	return func(c *getConfig) { c.disableSync = disable }
}

package worker

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"time"
)

// ErrNotRegistered is returned by Registry.Lookup for an unknown task name.
var ErrNotRegistered = errors.New("task not registered")

// Handler is the raw form of a task: it receives the positional and keyword
// arguments as decoded from the message and returns the value to store.
type Handler func(ctx context.Context, args []any, kwargs map[string]any) (any, error)

// Task is a registered task: its name, handler and options.
type Task struct {
	Name    string
	Handler Handler
	Options TaskOptions

	errback ErrbackFunc // set by RegisterErrback
}

// TaskOptions are per-task settings, as Celery's task attributes.
type TaskOptions struct {
	// AcksLate overrides the worker's acks_late when set.
	AcksLate *bool
	// IgnoreResult skips storing SUCCESS results (failures are still stored).
	IgnoreResult bool
	// TimeLimit and SoftTimeLimit apply when the message gives none.
	TimeLimit     time.Duration
	SoftTimeLimit time.Duration
	// RateLimit is Celery's rate limit string: "10/s", "100/m", "1000/h".
	RateLimit string
	// MaxRetries caps retries (Celery's default is 3); a negative value
	// means no limit.
	MaxRetries *int
	// DefaultRetryDelay is the countdown of a retry that gives none
	// (Celery: 180 s).
	DefaultRetryDelay time.Duration
	// AutoRetry retries the task automatically on errors it accepts, as
	// Celery's autoretry_for / retry_backoff.
	AutoRetry *AutoRetryPolicy
	// TrackStarted stores a STARTED state before the task runs.
	TrackStarted bool
}

// Option configures a task at registration.
type Option func(*taskConfig) error

type taskConfig struct {
	params   []string
	defaults map[string]any
	opts     TaskOptions
	errback  ErrbackFunc
}

// Params names the parameters of a plain Go function, in order (without the
// context), so that keyword arguments bind as in Python.
func Params(names ...string) Option {
	return func(c *taskConfig) error { c.params = append([]string(nil), names...); return nil }
}

// Default gives a parameter a default value, used when the caller passes
// neither a positional nor a keyword argument for it.
func Default(name string, value any) Option {
	return func(c *taskConfig) error {
		if c.defaults == nil {
			c.defaults = map[string]any{}
		}
		c.defaults[name] = value
		return nil
	}
}

// WithOptions sets the task's options.
func WithOptions(o TaskOptions) Option {
	return func(c *taskConfig) error { c.opts = o; return nil }
}

// Registry maps Celery task names to Go tasks. It is safe for concurrent
// use.
type Registry struct {
	mu    sync.RWMutex
	tasks map[string]*Task
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{tasks: map[string]*Task{}} }

// Handle registers a raw handler under name.
func (r *Registry) Handle(name string, h Handler, opts ...Option) error {
	if name == "" || h == nil {
		return errors.New("worker: task name and handler are required")
	}
	var c taskConfig
	for _, o := range opts {
		if err := o(&c); err != nil {
			return err
		}
	}
	return r.add(&Task{Name: name, Handler: h, Options: c.opts, errback: c.errback})
}

// Register registers a plain Go function under name. The function may take
// a context.Context first, then any parameters whose types arguments can be
// converted to, and returns (T, error), (T), (error) or nothing. Params
// names its parameters so that keyword arguments bind; without it only
// positional arguments are accepted.
//
// Arguments are converted by protocol.ToGo, the rule result.As also
// follows: an int parameter takes 3 or 3.0 but refuses 2.5, a struct takes
// a dict by its json tags, and so on. A value that does not fit fails the
// task with Python's TypeError ("double() argument 'x' must be int, not
// float"). The result is written by protocol.FromGo's rule: a float64 is a
// Python float wherever it sits.
func (r *Registry) Register(name string, fn any, opts ...Option) error {
	var c taskConfig
	for _, o := range opts {
		if err := o(&c); err != nil {
			return err
		}
	}
	b, err := newBinder(name, fn, c.params, c.defaults)
	if err != nil {
		return err
	}
	return r.add(&Task{Name: name, Handler: b.call, Options: c.opts, errback: c.errback})
}

// MustRegister is Register that panics on error, for use at start-up.
func (r *Registry) MustRegister(name string, fn any, opts ...Option) {
	if err := r.Register(name, fn, opts...); err != nil {
		panic(err)
	}
}

func (r *Registry) add(t *Task) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.tasks[t.Name]; dup {
		return fmt.Errorf("worker: task %q registered twice", t.Name)
	}
	r.tasks[t.Name] = t
	return nil
}

// SetRateLimit sets the rate limit of a registered task ("10/s", "100/m",
// "1000/h"; "" removes it). It applies to workers created afterwards.
func (r *Registry) SetRateLimit(name, limit string) error {
	if _, err := ParseRateLimit(limit); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.tasks[name]
	if t == nil {
		return fmt.Errorf("%w: %q", ErrNotRegistered, name)
	}
	cp := *t
	cp.Options.RateLimit = limit
	r.tasks[name] = &cp
	return nil
}

// Lookup returns the task registered under name.
func (r *Registry) Lookup(name string) (*Task, error) {
	r.mu.RLock()
	t := r.tasks[name]
	r.mu.RUnlock()
	if t == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotRegistered, name)
	}
	return t, nil
}

// Names returns the registered task names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.tasks))
	for n := range r.tasks {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// RegisterTyped registers a function taking one struct of arguments. Each
// exported field binds a parameter named by its `celery` tag (or its json
// tag, or its lower-cased name), positional arguments bind fields in order.
func RegisterTyped[In any, Out any](r *Registry, name string, fn func(context.Context, In) (Out, error), opts ...Option) error {
	var zero In
	t := reflect.TypeOf(zero)
	if t == nil || t.Kind() != reflect.Struct {
		return fmt.Errorf("worker: RegisterTyped %q: the argument type must be a struct", name)
	}
	fields, err := structParams(t)
	if err != nil {
		return err
	}
	var c taskConfig
	for _, o := range opts {
		if err := o(&c); err != nil {
			return err
		}
	}
	h := func(ctx context.Context, args []any, kwargs map[string]any) (any, error) {
		var in In
		v := reflect.ValueOf(&in).Elem()
		if err := bindStruct(name, v, fields, c.defaults, args, kwargs); err != nil {
			return nil, err
		}
		return fn(ctx, in)
	}
	return r.add(&Task{Name: name, Handler: h, Options: c.opts})
}

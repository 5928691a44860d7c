package gworker

import (
	"context"

	"github.com/gworker/gworker/worker"
)

// TaskOption configures a task at registration (worker.Option).
type TaskOption = worker.Option

// TaskOptions are per-task settings, as Celery's task attributes
// (worker.TaskOptions).
type TaskOptions = worker.TaskOptions

// Handler is the raw form of a task (worker.Handler).
type Handler = worker.Handler

// Params names a plain function's parameters, in order and without the
// context, so that keyword arguments bind as in Python.
func Params(names ...string) TaskOption { return worker.Params(names...) }

// Default gives a parameter a default value.
func Default(name string, value any) TaskOption { return worker.Default(name, value) }

// WithOptions sets a task's options (acks_late, time and rate limits,
// retries...).
func WithOptions(o TaskOptions) TaskOption { return worker.WithOptions(o) }

// Register adds a plain Go function as the task name. fn takes an
// optional context.Context first, then the task's parameters, and returns
// a value, an error, or both:
//
//	func(ctx context.Context, x, y int) (int, error)
//
// Arguments bind as in Python (positional, keyword with Params, defaults
// with Default); a wrong call fails the task with Python's TypeError.
func (a *App) Register(name string, fn any, opts ...TaskOption) error {
	return a.registry.Register(name, fn, opts...)
}

// MustRegister is Register that panics on error, for registrations at
// start-up.
func (a *App) MustRegister(name string, fn any, opts ...TaskOption) {
	a.registry.MustRegister(name, fn, opts...)
}

// Handle adds a raw handler that receives the decoded args and kwargs.
func (a *App) Handle(name string, h Handler, opts ...TaskOption) error {
	return a.registry.Handle(name, h, opts...)
}

// RegisterTyped adds a task whose arguments bind to the fields of one
// struct (by their `celery` tag, else their json tag, else their name).
func RegisterTyped[In, Out any](a *App, name string, fn func(context.Context, In) (Out, error), opts ...TaskOption) error {
	return worker.RegisterTyped(a.registry, name, fn, opts...)
}

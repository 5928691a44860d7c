package producer

import "context"

// PublishFunc publishes one message.
type PublishFunc func(ctx context.Context, msg Message) error

// Middleware wraps every publish of a Producer: SendTask, Publish and
// PublishMessage, so also what a worker publishes after a task (callbacks,
// chain links, chord bodies, errbacks, retries) and what tasks send. It
// is how a trace span around a publish (Celery's before_task_publish and
// after_task_publish signals) and the trace context in the message's
// headers get in.
//
// msg.Message may be shared with the caller: a middleware that changes
// the message (adds headers) passes next a copy, with a Headers map of its
// own, never writes into the one it was given. Options.Middleware lists
// them, the first one outermost; with none, publishing costs nothing more.
type Middleware func(next PublishFunc) PublishFunc

// chainPublish builds the PublishFunc of mws around inner.
func chainPublish(mws []Middleware, inner PublishFunc) PublishFunc {
	h := inner
	for i := len(mws) - 1; i >= 0; i-- {
		if mws[i] != nil {
			h = mws[i](h)
		}
	}
	return h
}

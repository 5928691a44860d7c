package worker

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
)

// ErrbackFunc is a "new-style" errback: Celery calls an errback whose
// function takes (request, exc, traceback) inline, in the worker where
// the task failed, instead of sending it as a task with the failed task's
// id. req is the failed task's request (for a chord whose header failed,
// the chord body's), exc the exception stored, tb its traceback.
type ErrbackFunc func(ctx context.Context, req *Request, exc *protocol.Exception, tb string) (any, error)

// RegisterErrback registers fn as the new-style errback name: when a task
// that fails here lists name among its errbacks (link_error), fn is called
// inline with the failed task's request, exception and traceback, as
// Celery calls a Python errback taking (request, exc, traceback). The
// errback's own partial arguments are not passed. A message that calls
// name as a task fails with TypeError, as it would in Python.
func (r *Registry) RegisterErrback(name string, fn ErrbackFunc, opts ...Option) error {
	if fn == nil {
		return fmt.Errorf("worker: errback %q has no function", name)
	}
	var c taskConfig
	for _, o := range opts {
		if err := o(&c); err != nil {
			return err
		}
	}
	h := func(ctx context.Context, args []any, kwargs map[string]any) (any, error) {
		return nil, PyError("TypeError", fmt.Sprintf("%s() missing required positional arguments: 'request', 'exc' and 'traceback' (a new-style errback runs inline in the worker where the task failed)", name))
	}
	return r.add(&Task{Name: name, Handler: h, Options: c.opts, errback: fn})
}

// InlineErrback makes a task also a new-style errback: sent as a message
// it runs as the task it is, and listed among a failing task's errbacks it
// is called inline as fn, as Celery calls a Python task whose function
// takes more than one positional argument (or *args) when it is an
// errback, instead of sending it the failed task's id.
func InlineErrback(fn ErrbackFunc) Option {
	return func(c *taskConfig) error {
		if fn == nil {
			return errors.New("worker: InlineErrback needs a function")
		}
		c.errback = fn
		return nil
	}
}

type errbacksKey struct{}

// inlineErrbacks calls the new-style errbacks of a worker's registry.
type inlineErrbacks struct {
	registry *Registry
	hostname string
	log      *zap.Logger
}

// withInlineErrbacks returns ctx with which Followups can call
// CallInlineErrbacks.
func withInlineErrbacks(ctx context.Context, ie *inlineErrbacks) context.Context {
	if ie == nil || ie.registry == nil {
		return ctx
	}
	return context.WithValue(ctx, errbacksKey{}, ie)
}

// CallInlineErrbacks calls, in order, the errbacks registered with
// RegisterErrback in the worker whose Followups got ctx, with failed as
// the request, and returns the other errbacks, to be sent as tasks with
// the failed task's id ("old style"). An errback that fails is logged;
// the others still run. Outside a worker's Followups it returns errbacks
// unchanged.
func CallInlineErrbacks(ctx context.Context, failed *protocol.Message, errbacks []protocol.Signature, exc *protocol.Exception, tb string) []protocol.Signature {
	ie, ok := ctx.Value(errbacksKey{}).(*inlineErrbacks)
	if !ok || len(errbacks) == 0 {
		return errbacks
	}
	var rest []protocol.Signature
	for _, eb := range errbacks {
		t, err := ie.registry.Lookup(eb.Task)
		if err != nil || t.errback == nil || eb.SubtaskType != "" {
			rest = append(rest, eb)
			continue
		}
		req := requestOf(failed, ie.hostname)
		rctx := withRequest(ctx, req, ie.log)
		if _, err := callErrback(rctx, t.errback, req, exc, tb); err != nil {
			ie.log.Error(fmt.Sprintf("Errback %s of task %s[%s] raised: %v", eb.Task, failed.Name(), failed.ID, err),
				zap.String("id", failed.ID), zap.Error(err))
		}
	}
	return rest
}

func callErrback(ctx context.Context, fn ErrbackFunc, req *Request, exc *protocol.Exception, tb string) (v any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return fn(ctx, req, exc, tb)
}

// requestOf is the Request of a task message.
func requestOf(msg *protocol.Message, hostname string) *Request {
	return &Request{
		ID: msg.ID, Task: msg.Task, Args: msg.Args, Kwargs: msg.Kwargs, Retries: msg.Retries,
		RootID: msg.RootID, ParentID: msg.ParentID, GroupID: msg.GroupID, GroupIndex: msg.GroupIndex,
		ETA: msg.ETA, Expires: msg.Expires, Headers: msg.Headers, ReplyTo: msg.ReplyTo,
		CorrelationID: msg.CorrelationID, AppID: msg.AppID, Hostname: hostname, Message: msg,
		DeliveryInfo: DeliveryInfo{Exchange: msg.Exchange, RoutingKey: msg.RoutingKey, Priority: msg.Priority, Redelivered: msg.Redelivered},
	}
}

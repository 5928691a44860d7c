package gworker

import (
	"context"

	"github.com/gworker/gworker/canvas"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result"
)

// SendTask sends the task name with args and kwargs, as Celery's
// app.send_task, connecting first if needed. The options are the
// producer's: producer.Queue, producer.Countdown, producer.ETA,
// producer.Expires, producer.Priority, producer.TaskID, ... Python and Go
// workers alike run it; the AsyncResult reads its result from the App's
// backend.
func (a *App) SendTask(ctx context.Context, name string, args []any, kwargs map[string]any, opts ...producer.Option) (*result.AsyncResult, error) {
	p, err := a.Producer(ctx)
	if err != nil {
		return nil, err
	}
	return p.SendTask(ctx, name, args, kwargs, opts...)
}

// Group applies group(sigs...) and returns its GroupResult; Save it for
// Python's GroupResult.restore.
func (a *App) Group(ctx context.Context, sigs ...*canvas.Signature) (*result.GroupResult, error) {
	p, err := a.Producer(ctx)
	if err != nil {
		return nil, err
	}
	return canvas.Group(sigs...).ApplyAsync(ctx, p)
}

// Chain applies chain(sigs...) and returns the result of its last task.
func (a *App) Chain(ctx context.Context, sigs ...*canvas.Signature) (*result.AsyncResult, error) {
	p, err := a.Producer(ctx)
	if err != nil {
		return nil, err
	}
	return canvas.Chain(sigs...).ApplyAsync(ctx, p)
}

// Chord applies chord(header)(body) and returns the body's result.
func (a *App) Chord(ctx context.Context, header []*canvas.Signature, body *canvas.Signature) (*result.AsyncResult, error) {
	p, err := a.Producer(ctx)
	if err != nil {
		return nil, err
	}
	return canvas.Chord(header, body).ApplyAsync(ctx, p)
}

// AsyncResult returns the result of the task id, read from the App's
// backend (connecting first if needed).
func (a *App) AsyncResult(ctx context.Context, id string) (*result.AsyncResult, error) {
	b, err := a.Backend(ctx)
	if err != nil {
		return nil, err
	}
	return result.NewAsyncResult(id, b), nil
}

// RestoreGroup reads a GroupResult saved by Python's GroupResult.save or
// by Go's, as Celery's GroupResult.restore.
func (a *App) RestoreGroup(ctx context.Context, id string) (*result.GroupResult, error) {
	b, err := a.Backend(ctx)
	if err != nil {
		return nil, err
	}
	return result.RestoreGroup(ctx, b, id)
}

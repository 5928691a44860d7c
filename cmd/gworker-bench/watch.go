package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

const keyPrefix = "celery-task-meta-"

// watcher follows the results of one run as the workers publish them: it
// pattern-subscribes to the result keys of the run's task ids (which share
// a per-run prefix) and records when the first and the last arrived.
type watcher struct {
	ps      *redis.PubSub
	want    map[string]bool // task ids not seen yet
	total   int
	onFirst func()
}

// watchResults subscribes before anything is published, so no result is
// missed. onFirst runs (on the watcher's goroutine) when the first result
// arrives.
func watchResults(ctx context.Context, rdb *redis.Client, idPrefix string, ids []string, onFirst func()) (*watcher, error) {
	ps := rdb.PSubscribe(ctx, keyPrefix+idPrefix+"*")
	if _, err := ps.Receive(ctx); err != nil {
		ps.Close()
		return nil, fmt.Errorf("psubscribe: %w", err)
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	return &watcher{ps: ps, want: want, total: len(ids), onFirst: onFirst}, nil
}

// wait returns when every result has been published, with the time of the
// first and of the last one; or when ctx ends or a task fails.
func (w *watcher) wait(ctx context.Context) (first, last time.Time, err error) {
	defer w.ps.Close()
	ch := w.ps.Channel(redis.WithChannelSize(w.total + 100))
	const success = `"status": "SUCCESS"`
	for len(w.want) > 0 {
		select {
		case <-ctx.Done():
			return first, last, fmt.Errorf("%d of %d results: %w", w.total-len(w.want), w.total, ctx.Err())
		case m, ok := <-ch:
			if !ok {
				return first, last, fmt.Errorf("result subscription closed")
			}
			id := strings.TrimPrefix(m.Channel, keyPrefix)
			if !w.want[id] {
				continue
			}
			if !strings.Contains(m.Payload, success) {
				if strings.Contains(m.Payload, `"status": "FAILURE"`) {
					return first, last, fmt.Errorf("task %s failed: %.300s", id, m.Payload)
				}
				continue // STARTED, RETRY...
			}
			now := time.Now()
			if first.IsZero() {
				first = now
				if w.onFirst != nil {
					w.onFirst()
				}
			}
			last = now
			delete(w.want, id)
		}
	}
	return first, last, nil
}

func (w *watcher) close() { w.ps.Close() }

// waiter is what a run waits on: the results of its tasks, or the
// notifications of a consumer that writes none.
type waiter interface {
	// wait returns the times of the first and the last result (or
	// notification).
	wait(ctx context.Context) (first, last time.Time, err error)
	close()
}

// notifyWatcher follows a bare-ack consumer's notifications: "first" when
// its first acknowledgement was written, "done" when it has acknowledged
// every message of the run.
type notifyWatcher struct {
	ps      *redis.PubSub
	onFirst func()
}

func watchNotify(ctx context.Context, rdb *redis.Client, channel string, onFirst func()) (*notifyWatcher, error) {
	ps := rdb.Subscribe(ctx, channel)
	if _, err := ps.Receive(ctx); err != nil {
		ps.Close()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	return &notifyWatcher{ps: ps, onFirst: onFirst}, nil
}

func (w *notifyWatcher) close() { w.ps.Close() }

func (w *notifyWatcher) wait(ctx context.Context) (first, last time.Time, err error) {
	defer w.ps.Close()
	ch := w.ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return first, last, fmt.Errorf("waiting for the acknowledgements: %w", ctx.Err())
		case m, ok := <-ch:
			if !ok {
				return first, last, fmt.Errorf("notification subscription closed")
			}
			now := time.Now()
			switch m.Payload {
			case bareAckFirst:
				first = now
				if w.onFirst != nil {
					w.onFirst()
				}
			case bareAckDone:
				if first.IsZero() {
					return first, last, fmt.Errorf("%q before %q", bareAckDone, bareAckFirst)
				}
				return first, now, nil
			}
		}
	}
}

package main

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

const keyPrefix = "celery-task-meta-"

// Polling of the result keys: every pollInterval, one EXISTS over the
// next pollWindow keys in publishing order (which a worker roughly
// follows), moving on while a whole window is there.
const (
	pollInterval = 5 * time.Millisecond
	pollWindow   = 64
)

// watcher follows the results of one run by polling for their keys, and
// records when the first and the last appeared, to within pollInterval. It
// used to pattern-subscribe to them: the bench then received and parsed
// every result as it was published, and its own CPU over the run came to
// 20–43 µs per task while a result-writing worker ran against 10–15 µs
// while the bare-ack consumer did, on the cores the worker under test
// shares: the result-writing workers were charged for the measuring.
// Polling brought that to about 15 µs against 9–11. A key counts when it
// exists; verify checks afterwards that every one holds SUCCESS (a worker
// that stored STARTED first would fail it).
type watcher struct {
	rdb     *redis.Client
	keys    []string // the result keys, in publishing order
	onFirst func()
}

// watchResults returns a watcher of ids' results. onFirst runs (on the
// watcher's goroutine) when the first result is seen.
func watchResults(_ context.Context, rdb *redis.Client, _ string, ids []string, onFirst func()) (*watcher, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = keyPrefix + id
	}
	return &watcher{rdb: rdb, keys: keys, onFirst: onFirst}, nil
}

// wait returns when every result has been stored, with the time of the
// first and of the last one; or when ctx ends.
func (w *watcher) wait(ctx context.Context) (first, last time.Time, err error) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	done := 0 // keys before this one are all there
	for done < len(w.keys) {
		select {
		case <-ctx.Done():
			return first, last, fmt.Errorf("%d of %d results: %w", done, len(w.keys), ctx.Err())
		case <-t.C:
		}
		for done < len(w.keys) {
			window := w.keys[done:min(done+pollWindow, len(w.keys))]
			n, err := w.rdb.Exists(ctx, window...).Result()
			if err != nil {
				return first, last, fmt.Errorf("polling the results: %w", err)
			}
			if n > 0 && first.IsZero() {
				first = time.Now()
				if w.onFirst != nil {
					w.onFirst()
				}
			}
			if n < int64(len(window)) {
				break
			}
			done += len(window)
		}
	}
	return first, time.Now(), nil
}

func (w *watcher) close() {}

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

package sqlbackend

import (
	"context"
	"time"

	"github.com/gworker/gworker/result"
)

// fetchChunk bounds the ids of one SELECT ... IN (...).
const fetchChunk = 500

// fetcher reads the stored metas of ids (absent ids are left out).
type fetcher func(ctx context.Context, ids []string) (map[string]*result.Meta, error)

// waitReady polls the rows of ids, many at a time, until each is ready,
// and calls fn once per distinct id. The first read is at once; then the
// interval starts at PollInterval and grows by half while no result
// arrives, up to MaxPollInterval, and starts again when one does.
func (c *core) waitReady(ctx context.Context, ids []string, fetch fetcher, fn func(*result.Meta)) error {
	if fn == nil {
		fn = func(*result.Meta) {}
	}
	pending := make([]string, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			pending = append(pending, id)
		}
	}
	interval := c.cfg.PollInterval
	t := time.NewTimer(0)
	defer t.Stop()
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		progressed := false
		rest := pending[:0:0]
		for start := 0; start < len(pending); start += fetchChunk {
			chunk := pending[start:min(start+fetchChunk, len(pending))]
			var got map[string]*result.Meta
			err := c.retry(ctx, "poll results", func(ctx context.Context) error {
				var err error
				got, err = fetch(ctx, chunk)
				return err
			})
			if err != nil {
				return err
			}
			for _, id := range chunk {
				if m := got[id]; m != nil && m.Status.Ready() {
					m.TaskID = id
					fn(m)
					progressed = true
					continue
				}
				rest = append(rest, id)
			}
		}
		pending = rest
		if progressed {
			interval = c.cfg.PollInterval
		} else {
			interval = min(interval*3/2, c.cfg.MaxPollInterval)
		}
		t.Reset(interval)
	}
	return nil
}

package sqlbackend

import (
	"context"
	"sync"
)

// row is one result waiting to be written: its task id and the column
// values of its layout.
type row struct {
	id   string
	args []any
	err  error
	// done receives false once the row was written (err is then set), or
	// true when this row's caller must lead the next batch.
	done chan bool
}

// batcher coalesces concurrent Stores into multi-row statements (group
// commit): the first caller writes every row queued meanwhile, up to
// MaxBatch, in one statement per round; rows that arrive while it writes
// wait and form the next batch, led by the oldest of them. A lone Store
// is written at once, so batching adds no latency. Each row is written by
// the same upsert as alone, so readers see the same rows either way.
type batcher struct {
	mu      sync.Mutex
	queue   []*row
	leading bool
	max     int
	// write writes rows (distinct task ids) and returns one error per row
	// (nil slice: all succeeded).
	write func(ctx context.Context, rows []*row) []error
}

// store queues r and returns once it is written.
func (bt *batcher) store(ctx context.Context, r *row) error {
	r.done = make(chan bool, 1)
	bt.mu.Lock()
	bt.queue = append(bt.queue, r)
	lead := !bt.leading
	bt.leading = true
	bt.mu.Unlock()
	if !lead && !<-r.done {
		return r.err
	}
	bt.mu.Lock()
	n := min(len(bt.queue), bt.max)
	rows := bt.queue[:n:n]
	bt.queue = append([]*row(nil), bt.queue[n:]...)
	bt.mu.Unlock()
	// The others' writes must not fail because this caller gave up.
	bt.writeRounds(context.WithoutCancel(ctx), rows)
	bt.mu.Lock()
	var next *row
	if len(bt.queue) > 0 {
		next = bt.queue[0]
	} else {
		bt.leading = false
	}
	bt.mu.Unlock()
	for _, o := range rows {
		if o != r {
			o.done <- false
		}
	}
	if next != nil {
		next.done <- true
	}
	return r.err
}

// writeRounds writes rows in rounds of distinct task ids, so that two
// writes of one task in a batch (STARTED then SUCCESS) keep their order.
func (bt *batcher) writeRounds(ctx context.Context, rows []*row) {
	for len(rows) > 0 {
		seen := make(map[string]bool, len(rows))
		var round, later []*row
		for _, r := range rows {
			if seen[r.id] {
				later = append(later, r)
				continue
			}
			seen[r.id] = true
			round = append(round, r)
		}
		errs := bt.write(ctx, round)
		for i, err := range errs {
			round[i].err = err
		}
		rows = later
	}
}

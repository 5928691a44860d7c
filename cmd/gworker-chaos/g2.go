package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result/redisbackend"
)

// publish sends n tasks, task(i) naming the i-th and its options (its one
// argument is i), and returns their ids, those sent before an error too.
func (h *harness) publish(ctx context.Context, p *producer.Producer, n int, task func(i int) (string, []producer.Option)) (map[string]bool, error) {
	ids := make(map[string]bool, n)
	for i := 0; i < n; i++ {
		name, opts := task(i)
		r, err := p.SendTask(ctx, name, []any{i}, nil, opts...)
		if err != nil {
			return ids, fmt.Errorf("publish: %w", err)
		}
		ids[r.ID()] = true
	}
	return ids, nil
}

// work is the task most goals publish: chaos.work(i).
func work(int) (string, []producer.Option) { return "chaos.work", nil }

// forget deletes the results of ids from the backend.
func forget(rb *redisbackend.Backend, ids map[string]bool) {
	for id := range ids {
		_ = rb.Forget(context.Background(), id)
	}
}

// g2 kills the worker process group repeatedly while it drains tasks
// acknowledged early (when they start, the default): a task that was
// running at a kill is lost, none runs twice.
func (h *harness) g2(ctx context.Context) (line, error) {
	queue := "chaos-g2"
	oraclePath := filepath.Join(h.dir, queue+".oracle")
	b, rb, p, err := h.clients(ctx, queue)
	if err != nil {
		return line{}, err
	}
	defer b.Close()
	defer rb.Close()
	ids, err := h.publish(ctx, p, h.o.n, work)
	defer forget(rb, ids)
	if err != nil {
		return line{}, err
	}
	w, err := h.start(queue, oraclePath, false)
	if err != nil {
		return line{}, err
	}
	defer func() { w.kill() }()
	for k := 0; k < h.o.faults; k++ {
		time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
		w.kill()
		if w, err = h.start(queue, oraclePath, false); err != nil {
			return line{}, err
		}
	}
	// Lost tasks never finish, so the run ends when the queue is empty
	// and the oracle has not moved for 2 s (tasks take at most 200 ms).
	deadline := time.Now().Add(3 * time.Minute)
	var o oracle
	last, still := -1, 0
	for time.Now().Before(deadline) {
		select {
		case err := <-w.done:
			w.done <- err // for kill
			return line{}, fmt.Errorf("the worker exited on its own: %v", err)
		case <-time.After(500 * time.Millisecond):
		}
		if o, err = readOracle(oraclePath); err != nil {
			return line{}, err
		}
		st, err := b.Inspect(ctx, queue)
		if err != nil {
			return line{}, err
		}
		n := sum(o.start) + sum(o.done)
		if st.Messages == 0 && n == last {
			if still++; still >= 4 {
				break
			}
		} else {
			still = 0
		}
		last = n
	}
	w.kill()
	lost, unexpected, lostStarted := 0, 0, 0
	for id := range ids {
		if o.done[id] == 0 {
			lost++
			if o.start[id] > 0 {
				lostStarted++
			}
		}
	}
	for id := range o.start {
		if !ids[id] {
			unexpected++
		}
	}
	dup := sum(o.start) - len(o.start)
	bound := h.o.faults * concurrency
	pass := dup == 0 && unexpected == 0 && lost <= bound
	return line{fmt.Sprintf("G2 N=%d faults=%d lost=%d lost_started=%d dup=%d unexpected=%d bound=%d %s",
		h.o.n, h.o.faults, lost, lostStarted, dup, unexpected, bound, verdict(pass)), pass}, nil
}

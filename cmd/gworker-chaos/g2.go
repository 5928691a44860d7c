package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// g2 kills the worker process group repeatedly while it drains tasks
// acknowledged early (when they start, the default): a task that was
// running at a kill is lost, none runs twice.
func (h *harness) g2(ctx context.Context) (line, error) {
	r, err := h.open(ctx, "g2")
	if err != nil {
		return line{}, err
	}
	defer r.close()
	if err := r.publish(ctx, h.o.n, work); err != nil {
		return line{}, err
	}
	w, err := h.start(r.queue, r.oracle, false)
	if err != nil {
		return line{}, err
	}
	defer func() { w.kill() }()
	for k := 0; k < h.o.faults; k++ {
		time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
		w.kill()
		if w, err = h.start(r.queue, r.oracle, false); err != nil {
			return line{}, err
		}
	}
	// Lost tasks never finish, so the run ends when the queue is empty
	// and the oracle has not moved for 2 s (tasks take at most 200 ms).
	deadline := time.Now().Add(3 * time.Minute)
	var o oracle
	last, still := -1, 0
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		if err := w.exitedOnItsOwn(); err != nil {
			return line{}, err
		}
		if o, err = readOracle(r.oracle); err != nil {
			return line{}, err
		}
		st, err := r.b.Inspect(ctx, r.queue)
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
	c := o.tally(r.ids)
	dup := sum(o.start) - len(o.start) // started twice: run twice
	bound := h.o.faults * concurrency
	pass := dup == 0 && c.unexpected == 0 && c.lost <= bound
	return line{fmt.Sprintf("G2 N=%d faults=%d lost=%d lost_started=%d dup=%d unexpected=%d bound=%d %s",
		h.o.n, h.o.faults, c.lost, c.lostStarted, dup, c.unexpected, bound, verdict(pass)), pass}, nil
}

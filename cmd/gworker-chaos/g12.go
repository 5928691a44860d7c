package main

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/gworker/gworker/producer"
)

// etaDelay is how far ahead G12's ETA tasks are due.
const etaDelay = 20 * time.Second

// g12 sends SIGTERM to a worker running concurrency slow tasks, holding
// prefetched ones and ETA ones: the running tasks finish before it exits,
// within the grace period, everything else is back in the queue, and the
// next worker runs it.
func (h *harness) g12(ctx context.Context) (line, error) {
	r, err := h.open(ctx, "g12")
	if err != nil {
		return line{}, err
	}
	defer r.close()
	// ETA tasks first, so that the worker holds them (each raises the
	// prefetch window by one), then slow tasks: concurrency of them run,
	// the window's rest waits prefetched, the others wait in the queue.
	eta := time.Now().Add(etaDelay)
	err = r.publish(ctx, h.o.eta+concurrency*(2+prefetchMul), func(i int) (string, []producer.Option) {
		if i < h.o.eta {
			return "chaos.work", []producer.Option{producer.ETA(eta)}
		}
		return "chaos.slow", nil
	})
	if err != nil {
		return line{}, err
	}
	w, err := h.start(r.queue, r.oracle, true)
	if err != nil {
		return line{}, err
	}
	defer func() { w.kill() }()
	// Wait until the pool is busy, then give the prefetch a moment.
	busy := func(o oracle) bool { return len(o.start) >= concurrency }
	if err := waitOracle(r.oracle, time.Minute, fmt.Sprintf("%d tasks to start", concurrency), busy); err != nil {
		return line{}, err
	}
	time.Sleep(500 * time.Millisecond)
	t0 := time.Now()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return line{}, err
	}
	exited := true
	select {
	case err := <-w.done:
		w.done <- err // for kill
	case <-time.After(grace + 30*time.Second):
		exited = false
	}
	exit := time.Since(t0)
	w.kill()
	o1, err := readOracle(r.oracle)
	if err != nil {
		return line{}, err
	}
	finished := 0
	for id := range o1.start {
		if o1.done[id] > 0 {
			finished++
		}
	}
	// Whatever was not finished is back in the queue (allow the broker a
	// moment to count messages of the closed connection).
	want := len(r.ids) - len(o1.done)
	requeued := 0
	for end := time.Now().Add(10 * time.Second); ; {
		st, err := r.b.Inspect(ctx, r.queue)
		if err != nil {
			return line{}, err
		}
		requeued = st.Messages
		if requeued >= want || time.Now().After(end) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The next worker runs the rest, the ETA tasks when they are due.
	w, err = h.start(r.queue, r.oracle, true)
	if err != nil {
		return line{}, err
	}
	o, err := waitAllDone(w, r.oracle, len(r.ids), etaDelay+3*time.Minute)
	if err != nil {
		w.kill()
		return line{}, err
	}
	w.kill()
	c := o.tally(r.ids)
	dup := sum(o.start) - len(o.start)
	pass := exited && exit < grace && finished == len(o1.start) && len(o1.start) >= concurrency &&
		requeued == want && c.lost == 0 && dup == 0 && c.unexpected == 0
	return line{fmt.Sprintf("G12 running=%d finished_before_exit=%d eta_held=%d queued=%d exit=%.1fs grace=%s requeued=%d/%d lost=%d dup=%d unexpected=%d %s",
		len(o1.start), finished, h.o.eta, len(r.ids)-h.o.eta, exit.Seconds(), grace, requeued, want, c.lost, dup, c.unexpected, verdict(pass)), pass}, nil
}

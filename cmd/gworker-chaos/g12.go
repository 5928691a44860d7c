package main

import (
	"context"
	"fmt"
	"path/filepath"
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
	queue := "chaos-g12"
	oraclePath := filepath.Join(h.dir, queue+".oracle")
	b, rb, p, err := h.clients(ctx, queue)
	if err != nil {
		return line{}, err
	}
	defer b.Close()
	defer rb.Close()
	// ETA tasks first, so that the worker holds them (each raises the
	// prefetch window by one), then slow tasks: concurrency of them run,
	// the window's rest waits prefetched, the others wait in the queue.
	eta := time.Now().Add(etaDelay)
	ids, err := h.publish(ctx, p, h.o.eta+concurrency*(2+prefetchMul), func(i int) (string, []producer.Option) {
		if i < h.o.eta {
			return "chaos.work", []producer.Option{producer.ETA(eta)}
		}
		return "chaos.slow", nil
	})
	defer forget(rb, ids)
	if err != nil {
		return line{}, err
	}
	w, err := h.start(queue, oraclePath, true)
	if err != nil {
		return line{}, err
	}
	defer func() { w.kill() }()
	// Wait until the pool is busy, then give the prefetch a moment.
	deadline := time.Now().Add(time.Minute)
	for {
		o, err := readOracle(oraclePath)
		if err != nil {
			return line{}, err
		}
		if len(o.start) >= concurrency {
			break
		}
		if time.Now().After(deadline) {
			return line{}, fmt.Errorf("%d tasks started in a minute, want %d", len(o.start), concurrency)
		}
		time.Sleep(100 * time.Millisecond)
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
	o1, err := readOracle(oraclePath)
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
	want := len(ids) - len(o1.done)
	requeued := 0
	for end := time.Now().Add(10 * time.Second); ; {
		st, err := b.Inspect(ctx, queue)
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
	w, err = h.start(queue, oraclePath, true)
	if err != nil {
		return line{}, err
	}
	o, err := waitAllDone(w, oraclePath, len(ids), etaDelay+3*time.Minute)
	if err != nil {
		w.kill()
		return line{}, err
	}
	w.kill()
	lost, unexpected := o.tally(ids)
	dup := sum(o.start) - len(o.start)
	pass := exited && exit < grace && finished == len(o1.start) && len(o1.start) >= concurrency &&
		requeued == want && lost == 0 && dup == 0 && unexpected == 0
	return line{fmt.Sprintf("G12 running=%d finished_before_exit=%d eta_held=%d queued=%d exit=%.1fs grace=%s requeued=%d/%d lost=%d dup=%d unexpected=%d %s",
		len(o1.start), finished, h.o.eta, len(ids)-h.o.eta, exit.Seconds(), grace, requeued, want, lost, dup, unexpected, verdict(pass)), pass}, nil
}

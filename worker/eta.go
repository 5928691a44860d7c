package worker

import (
	"context"
	"math"
	"time"

	"go.uber.org/zap"
)

// DefaultMaxHeldETABytes is the default Config.MaxHeldETABytes: 64 MiB of
// held message bodies raise the prefetch window at most.
const DefaultMaxHeldETABytes = 64 << 20

// hold keeps a message whose ETA is in the future unacknowledged until it
// is due, without taking a pool slot. As Celery, each held message raises
// the prefetch window by one so that it does not starve the consumer, up to
// MaxHeldETA messages and MaxHeldETABytes of bodies; beyond either cap it
// waits inside the normal window. A message due after the ETA horizon is held only until the
// horizon and then published again (same id, same ETA) and acknowledged.
// announce runs once j is listed by Scheduled and before its timer starts,
// so that an observer of task-received finds it there and never sees it
// start first.
func (w *Worker) hold(j *job, delay time.Duration, announce func()) {
	w.mu.Lock()
	if w.stopping {
		w.mu.Unlock()
		announce()
		requeue(w.log, j.d)
		w.inflight.Done()
		return
	}
	size := int64(len(j.d.Raw().Body))
	raise := w.prefetch > 0 && w.heldRise < w.cfg.MaxHeldETA &&
		(w.cfg.MaxHeldETABytes < 0 || w.heldRiseBytes+size <= w.cfg.MaxHeldETABytes)
	if raise {
		w.heldRise++
		w.heldRiseBytes += size
	} else {
		size = 0
	}
	window := w.prefetch + w.heldRise
	horizon := delay > w.cfg.ETAHorizon && w.cfg.Followups != nil
	wait := delay
	if horizon {
		wait = w.cfg.ETAHorizon
	}
	t := time.AfterFunc(time.Duration(math.MaxInt64), func() { w.release(j, raise, size, horizon) })
	w.held[j] = t
	cons := w.consumer
	w.mu.Unlock()
	announce()
	// Armed only now. Should shutdown have taken j back meanwhile, release
	// finds it gone and does nothing.
	t.Reset(wait)
	if raise && cons != nil {
		if err := cons.SetPrefetch(window); err != nil {
			w.log.Warn("raise prefetch", zap.Error(err))
		}
	}
}

// release ends j's wait; raised and size say whether and by how many body
// bytes it raised the prefetch window.
func (w *Worker) release(j *job, raised bool, size int64, horizon bool) {
	w.mu.Lock()
	if _, ok := w.held[j]; !ok {
		w.mu.Unlock()
		return // taken back by shutdown
	}
	delete(w.held, j)
	if raised {
		w.heldRise--
		w.heldRiseBytes -= size
	}
	window := w.prefetch + w.heldRise
	cons := w.consumer
	w.mu.Unlock()
	if raised && cons != nil {
		if err := cons.SetPrefetch(window); err != nil {
			w.log.Warn("lower prefetch", zap.Error(err))
		}
	}
	if w.discardIfRevoked(j) {
		w.inflight.Done()
		return
	}
	if horizon {
		if err := w.cfg.Followups.Republish(context.Background(), j.msg, j.d.Raw()); err != nil {
			w.log.Warn("republish of a far ETA failed; keeping it held", zap.String("id", j.msg.ID), zap.Error(err))
			w.hold(j, time.Until(*j.msg.ETA), func() {})
			return
		}
		j.ack(w.log)
		w.inflight.Done()
		return
	}
	w.schedule(j)
}

package worker

import (
	"math"
	"sync"
	"time"

	"go.uber.org/zap"
)

// hold keeps the messages that may not run yet without taking a pool
// slot: those waiting for their ETA or countdown, and those waiting for
// their task's rate limit. It owns the prefetch window asked of the
// broker, which held ETA messages raise. Once closed (at shutdown) it
// takes nothing more and hands every message back.
type hold struct {
	log *zap.Logger
	// maxRise and maxRiseBytes cap how many held messages, and how many
	// body bytes of them, raise the window (Config.MaxHeldETA and
	// MaxHeldETABytes; negative bytes: no cap).
	maxRise      int
	maxRiseBytes int64
	// horizon is Config.ETAHorizon; it applies only when republish is set
	// (the worker has Followups to publish the message again).
	horizon   time.Duration
	republish bool
	limits    *rateLimits
	hooks     holdHooks

	mu        sync.Mutex
	closed    bool
	held      map[*job]*time.Timer // waiting for their ETA
	limited   map[*job]*time.Timer // waiting for their rate limit
	prefetch  int                  // the window without held messages (0: no limit)
	rise      int                  // how much held messages raise it
	riseBytes int64                // body bytes of the messages that raised it
	inWindow  int                  // held messages that did not raise it
	cons      Consumer             // whose window is raised; nil before start
}

// holdHooks are what a hold calls when a message's wait ends.
type holdHooks struct {
	// listed is called once an ETA message is listed as held and before
	// its timer starts.
	listed func(j *job)
	// due is called when j's ETA came, or its ETA horizon (horizon true).
	due func(j *job, horizon bool)
	// ready is called when j's rate limit lets it start.
	ready func(j *job)
	// back is called for a message the closed hold does not take.
	back func(j *job)
}

func newHold(log *zap.Logger, prefetch, maxRise int, maxRiseBytes int64, horizon time.Duration, republish bool, limits *rateLimits, hooks holdHooks) *hold {
	return &hold{log: log, prefetch: prefetch, maxRise: maxRise, maxRiseBytes: maxRiseBytes,
		horizon: horizon, republish: republish, limits: limits, hooks: hooks,
		held: map[*job]*time.Timer{}, limited: map[*job]*time.Timer{}}
}

// start gives the hold the consumer whose prefetch window it raises.
func (h *hold) start(cons Consumer) {
	h.mu.Lock()
	h.cons = cons
	h.mu.Unlock()
}

// eta keeps a message whose ETA is in the future unacknowledged until it
// is due, delay from now. As Celery, each held message raises the
// prefetch window by one so that it does not starve the consumer, up to
// maxRise messages and maxRiseBytes of bodies; beyond either cap it waits
// inside the normal window, on at most half of it: with republish, a
// message beyond that is published again at once (hooks.due(j, true)), so
// that ordinary tasks keep the other half. A message due after the ETA
// horizon is held only until the horizon, then hooks.due(j, true)
// publishes it again.
// With listed, hooks.listed runs once j is listed by scheduled and before
// its timer starts, so that an observer of task-received finds it there
// and never sees it start first.
func (h *hold) eta(j *job, delay time.Duration, listed bool) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		if listed {
			h.hooks.listed(j)
		}
		h.hooks.back(j)
		return
	}
	// What the message holds in memory is its body after decompression:
	// a small zlib body can inflate to the body size limit.
	size := int64(max(len(j.d.Raw().Body), j.msg.BodySize))
	raise := h.prefetch > 0 && h.rise < h.maxRise &&
		(h.maxRiseBytes < 0 || h.riseBytes+size <= h.maxRiseBytes)
	if !raise && h.republish && !j.keepHeld && h.prefetch > 0 && h.inWindow >= h.prefetch/2 {
		// Held messages that raise nothing fill the normal window: past
		// half of it, ordinary tasks would starve behind them. This one is
		// published again at once, as at the horizon.
		h.mu.Unlock()
		if listed {
			h.hooks.listed(j)
		}
		h.log.Info("Task "+j.msg.Name()+"["+j.msg.ID+"] sent back to the broker: the held ETA messages fill half the prefetch window",
			zap.String("id", j.msg.ID), zap.String("reason", "eta-window-full"))
		h.hooks.due(j, true)
		return
	}
	if raise {
		h.rise++
		h.riseBytes += size
	} else {
		size = 0
		h.inWindow++
	}
	window := h.prefetch + h.rise
	horizon := delay > h.horizon && h.republish
	wait := delay
	if horizon {
		wait = h.horizon
	}
	t := time.AfterFunc(time.Duration(math.MaxInt64), func() { h.release(j, raise, size, horizon) })
	h.held[j] = t
	cons := h.cons
	h.mu.Unlock()
	if listed {
		h.hooks.listed(j)
	}
	// Armed only now. Should close have taken j back meanwhile, release
	// finds it gone and does nothing.
	t.Reset(wait)
	if raise && cons != nil {
		if err := cons.SetPrefetch(window); err != nil {
			h.log.Warn("raise prefetch", zap.Error(err))
		}
	}
}

// release ends j's wait; raised and size say whether and by how many body
// bytes it raised the prefetch window.
func (h *hold) release(j *job, raised bool, size int64, horizon bool) {
	h.mu.Lock()
	if _, ok := h.held[j]; !ok {
		h.mu.Unlock()
		return // taken back by close
	}
	delete(h.held, j)
	if raised {
		h.rise--
		h.riseBytes -= size
	} else {
		h.inWindow--
	}
	window := h.prefetch + h.rise
	cons := h.cons
	h.mu.Unlock()
	if raised && cons != nil {
		if err := cons.SetPrefetch(window); err != nil {
			h.log.Warn("lower prefetch", zap.Error(err))
		}
	}
	h.hooks.due(j, horizon)
}

// throttle makes j wait for its task's rate limit and reports whether it
// does; false: j may start now. Waiting messages hold no pool slot, so
// other task types are never blocked.
func (h *hold) throttle(j *job) bool {
	delay := h.limits.reserve(j.task.Name)
	if delay <= 0 {
		return false
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.hooks.back(j)
		return true
	}
	h.limited[j] = time.AfterFunc(delay, func() {
		h.mu.Lock()
		_, mine := h.limited[j]
		delete(h.limited, j)
		h.mu.Unlock()
		if mine { // else close took it back
			h.hooks.ready(j)
		}
	})
	h.mu.Unlock()
	return true
}

// expedite ends at once the waits of the messages whose id is in ids.
func (h *hold) expedite(ids map[string]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for j, t := range h.held {
		if ids[j.msg.ID] {
			t.Reset(0)
		}
	}
	for j, t := range h.limited {
		if ids[j.msg.ID] {
			t.Reset(0)
		}
	}
}

// close makes the hold take nothing more and returns every message still
// waiting, for their queue. A timer that already fired finds its message
// gone and leaves it to the caller.
func (h *hold) close() []*job {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	out := make([]*job, 0, len(h.held)+len(h.limited))
	for j, t := range h.held {
		t.Stop()
		out = append(out, j)
	}
	for j, t := range h.limited {
		t.Stop()
		out = append(out, j)
	}
	h.held = map[*job]*time.Timer{}
	h.limited = map[*job]*time.Timer{}
	return out
}

// setPrefetch changes the window without held messages; it returns the
// window to ask of the consumer, and that consumer (nil before start).
func (h *hold) setPrefetch(n int) (window int, cons Consumer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.prefetch = n
	return h.prefetch + h.rise, h.cons
}

// prefetchCount returns the window without held messages.
func (h *hold) prefetchCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.prefetch
}

// scheduled returns the messages waiting for their ETA.
func (h *hold) scheduled() []*job {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*job, 0, len(h.held))
	for j := range h.held {
		out = append(out, j)
	}
	return out
}

// throttled returns the messages waiting for their rate limit.
func (h *hold) throttled() []*job {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*job, 0, len(h.limited))
	for j := range h.limited {
		out = append(out, j)
	}
	return out
}

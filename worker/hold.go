package worker

import (
	"container/heap"
	"errors"
	"math"
	"sync"
	"time"
	"unsafe"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/transport"
)

// hold keeps the messages that may not run yet without taking a pool
// slot: those waiting for their ETA or countdown, and those waiting for
// their task's rate limit. It owns the prefetch window asked of the
// broker, which held ETA messages raise. Once closed (at shutdown) it
// takes nothing more and hands every message back.
//
// A message waiting for its ETA can wait for hours, thousands of them at
// once, so it is kept small (heldETA): the message packed into one byte
// slice, its delivery parked by the transport when it can be (Parker), no
// decoded message and no job; one timer serves them all. It is decoded
// again when due, or when listed.
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
	decode    protocol.DecodeOptions
	epoch     time.Time // the origin of heldETA.at

	mu        sync.Mutex
	closed    bool
	held      etaHeap              // waiting for their ETA, the soonest first
	timer     *time.Timer          // fires when held[0] is due; nil before the first
	limited   map[*job]*time.Timer // waiting for their rate limit
	prefetch  int                  // the window without held messages (0: no limit)
	rise      int                  // how much held messages raise it
	riseBytes int64                // body bytes of the messages that raised it
	inWindow  int                  // held messages that did not raise it
	cons      Consumer             // whose window is raised; nil before start
}

// heldETA is a message waiting for its ETA, in 64 bytes besides the
// packed message.
type heldETA struct {
	// packed is the message (packRaw, as a string: never written) when
	// the delivery is parked; else the task id.
	packed string
	// d is the Delivery, or its transport.Parked.
	d    any
	task *Task
	at   time.Duration // when it is due, since hold.epoch
	// received is when it was received, in whole seconds since
	// hold.epoch (task-received was sent with the exact time).
	received int32
	size     int32 // body bytes it raised the window by
	index    int32 // in hold.held; -1 once out of it
	// idAt and idLen locate the task id in packed.
	idAt  uint16
	idLen uint8
	flags heldFlags
}

// heldFlags are a heldETA's booleans.
type heldFlags uint8

const (
	heldRaised  heldFlags = 1 << iota // it raised the prefetch window
	heldHorizon                       // due at the ETA horizon, not at its ETA
	heldPacked                        // packed is the message
)

func (e *heldETA) raised() bool   { return e.flags&heldRaised != 0 }
func (e *heldETA) horizon() bool  { return e.flags&heldHorizon != 0 }
func (e *heldETA) isPacked() bool { return e.flags&heldPacked != 0 }

func (e *heldETA) set(f heldFlags, on bool) {
	if on {
		e.flags |= f
	} else {
		e.flags &^= f
	}
}

// id returns the task id.
func (e *heldETA) id() string {
	if !e.isPacked() {
		return e.packed
	}
	return e.packed[e.idAt : int(e.idAt)+int(e.idLen)]
}

// notArmed is the due time of a message listed but not yet armed.
const notArmed = time.Duration(math.MaxInt64)

// etaHeap orders held messages by due time (container/heap).
type etaHeap []*heldETA

func (h etaHeap) Len() int           { return len(h) }
func (h etaHeap) Less(i, k int) bool { return h[i].at < h[k].at }
func (h etaHeap) Swap(i, k int) {
	h[i], h[k] = h[k], h[i]
	h[i].index, h[k].index = int32(i), int32(k)
}
func (h *etaHeap) Push(x any) {
	e := x.(*heldETA)
	e.index = int32(len(*h))
	*h = append(*h, e)
}
func (h *etaHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
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
	// invalid is called for a held message that no longer decodes when
	// due (it did when received: a bug), to be rejected.
	invalid func(d Delivery, raw *protocol.RawMessage, err error)
}

func newHold(log *zap.Logger, prefetch, maxRise int, maxRiseBytes int64, horizon time.Duration, republish bool, limits *rateLimits, decode protocol.DecodeOptions, hooks holdHooks) *hold {
	return &hold{log: log, prefetch: prefetch, maxRise: maxRise, maxRiseBytes: maxRiseBytes,
		horizon: horizon, republish: republish, limits: limits, hooks: hooks, decode: decode,
		epoch: time.Now(), limited: map[*job]*time.Timer{}}
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
// The hold keeps j's message and delivery, not j: the job hooks.due gets
// is another one, decoded again.
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
	size := int64(min(max(len(j.d.Raw().Body), j.msg.BodySize), math.MaxInt32))
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
	// Packed under the lock (a few microseconds), so that the window's
	// accounting stays the one decided above.
	e := h.shrink(j)
	if raise {
		h.rise++
		h.riseBytes += size
		e.size = int32(size)
	} else {
		h.inWindow++
	}
	e.set(heldRaised, raise)
	window := h.prefetch + h.rise
	e.set(heldHorizon, delay > h.horizon && h.republish)
	wait := delay
	if e.horizon() {
		wait = h.horizon
	}
	e.at = notArmed
	heap.Push(&h.held, e)
	cons := h.cons
	h.mu.Unlock()
	if listed {
		h.hooks.listed(j)
	}
	// Armed only now. Should close have taken it back meanwhile, it is out
	// of the heap; should expedite have made it due, it stays so.
	h.mu.Lock()
	if e.index >= 0 && e.at == notArmed {
		e.at = time.Since(h.epoch) + wait
		heap.Fix(&h.held, int(e.index))
		h.armLocked()
	}
	h.mu.Unlock()
	if raise && cons != nil {
		if err := cons.SetPrefetch(window); err != nil {
			h.log.Warn("raise prefetch", zap.Error(err))
		}
	}
}

// shrink turns j into what the hold keeps of it: with a transport that
// parks deliveries, its message packed and its delivery parked; otherwise
// its delivery with its message.
func (h *hold) shrink(j *job) *heldETA {
	e := &heldETA{packed: j.msg.ID, d: j.d, task: j.task,
		received: int32(min(max(j.received.Sub(h.epoch)/time.Second, 0), math.MaxInt32))}
	p, ok := j.d.(transport.Parker)
	if !ok {
		return e
	}
	packed, idAt, idLen, err := packRaw(j.d.Raw())
	if err != nil || idLen < 0 || idAt > math.MaxUint16 || idLen > math.MaxUint8 || string(packed[idAt:idAt+idLen]) != j.msg.ID {
		// A header value of a type packRaw does not know, or the id not
		// in the headers (protocol 1): the message stays as it is.
		h.log.Debug("held message kept unpacked", zap.String("id", j.msg.ID), zap.Error(err))
		return e
	}
	// packed is never written again: it is read as a string.
	e.packed = unsafe.String(unsafe.SliceData(packed), len(packed))
	e.set(heldPacked, true)
	e.idAt, e.idLen = uint16(idAt), uint8(idLen)
	e.d = p.Park()
	return e
}

// raw returns e's message, unpacked when it was packed.
func (e *heldETA) raw() (*protocol.RawMessage, error) {
	if !e.isPacked() {
		return e.d.(Delivery).Raw(), nil
	}
	return unpackRaw(unsafe.Slice(unsafe.StringData(e.packed), len(e.packed)))
}

// restore turns e back into a job: its delivery unparked and its message
// decoded again. When the message cannot be decoded (a bug: it was when
// received) the job's msg is nil and the error is logged; with reject, the
// message is then rejected through hooks.invalid and restore returns nil.
func (h *hold) restore(e *heldETA, reject bool) *job {
	raw, err := e.raw()
	if err != nil {
		raw = &protocol.RawMessage{}
	}
	d, ok := e.d.(Delivery)
	if !ok {
		d = e.d.(transport.Parked).Unpark(raw)
		raw = d.Raw()
	}
	var msg *protocol.Message
	if err == nil {
		msg, err = protocol.Decode(raw, h.decode)
	}
	if err != nil {
		h.log.Error("a held ETA message no longer decodes", zap.String("id", e.id()), zap.Error(err))
		if reject {
			h.hooks.invalid(d, raw, err)
			return nil
		}
	}
	return &job{d: d, msg: msg, task: e.task, received: h.received(e)}
}

// received returns when e was received, to the second.
func (h *hold) received(e *heldETA) time.Time {
	return h.epoch.Add(time.Duration(e.received) * time.Second)
}

// armLocked sets the timer for the soonest held message; h.mu is held.
func (h *hold) armLocked() {
	if len(h.held) == 0 || h.held[0].at == notArmed {
		return
	}
	wait := h.held[0].at - time.Since(h.epoch)
	if h.timer == nil {
		h.timer = time.AfterFunc(wait, h.fire)
		return
	}
	h.timer.Reset(wait)
}

// fire releases the held messages that are due.
func (h *hold) fire() {
	h.mu.Lock()
	now := time.Since(h.epoch)
	var due []*heldETA
	lowered := false
	for len(h.held) > 0 && h.held[0].at <= now {
		e := heap.Pop(&h.held).(*heldETA)
		if e.raised() {
			h.rise--
			h.riseBytes -= int64(e.size)
			lowered = true
		} else {
			h.inWindow--
		}
		due = append(due, e)
	}
	h.armLocked()
	window := h.prefetch + h.rise
	cons := h.cons
	h.mu.Unlock()
	if lowered && cons != nil {
		if err := cons.SetPrefetch(window); err != nil {
			h.log.Warn("lower prefetch", zap.Error(err))
		}
	}
	for _, e := range due {
		j := h.restore(e, true)
		switch {
		case j == nil:
		case e.horizon():
			// Published again: a broker round trip each, which the others
			// due now need not wait for.
			go h.hooks.due(j, true)
		default:
			h.hooks.due(j, false)
		}
	}
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
	found := false
	for _, e := range h.held {
		if ids[e.id()] {
			e.at, found = 0, true
		}
	}
	if found {
		heap.Init(&h.held)
		h.armLocked()
	}
	for j, t := range h.limited {
		if ids[j.msg.ID] {
			t.Reset(0)
		}
	}
}

// close makes the hold take nothing more and returns every message still
// waiting, for their queue. A message whose wait ended meanwhile is left
// to its caller. A returned job's msg is nil if its message no longer
// decodes.
func (h *hold) close() []*job {
	h.mu.Lock()
	h.closed = true
	if h.timer != nil {
		h.timer.Stop()
	}
	held := h.held
	h.held = nil
	for _, e := range held {
		e.index = -1
	}
	out := make([]*job, 0, len(held)+len(h.limited))
	for j, t := range h.limited {
		t.Stop()
		out = append(out, j)
	}
	h.limited = map[*job]*time.Timer{}
	h.mu.Unlock()
	for _, e := range held {
		out = append(out, h.restore(e, false))
	}
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

// scheduled returns the messages waiting for their ETA, decoded again for
// listing: their jobs' deliveries only tell Raw, and cannot settle.
func (h *hold) scheduled() []*job {
	h.mu.Lock()
	held := make([]*heldETA, len(h.held))
	copy(held, h.held)
	h.mu.Unlock()
	out := make([]*job, 0, len(held))
	for _, e := range held {
		raw, err := e.raw()
		var msg *protocol.Message
		if err == nil {
			msg, err = protocol.Decode(raw, h.decode)
		}
		if err != nil {
			h.log.Error("a held ETA message no longer decodes", zap.String("id", e.id()), zap.Error(err))
			continue
		}
		out = append(out, &job{d: listedDelivery{raw}, msg: msg, task: e.task, received: h.received(e)})
	}
	return out
}

// scheduledQueues calls f with the queue of every message waiting for its
// ETA, without decoding them where the delivery tells its queue
// (transport.QueueOf); else the routing key is read from the message.
func (h *hold) scheduledQueues(f func(queue string)) {
	h.mu.Lock()
	held := make([]*heldETA, len(h.held))
	copy(held, h.held)
	h.mu.Unlock()
	for _, e := range held {
		if q, ok := e.d.(transport.QueueOf); ok {
			f(q.ConsumedFrom())
			continue
		}
		if raw, err := e.raw(); err == nil {
			f(raw.RoutingKey)
		}
	}
}

// scheduledCount returns how many messages wait for their ETA.
func (h *hold) scheduledCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.held)
}

// errListedOnly: a listed held message was settled.
var errListedOnly = errors.New("worker: a held message listed by scheduled cannot be settled")

// listedDelivery is the delivery of a held message listed by scheduled: it
// only tells its message.
type listedDelivery struct{ raw *protocol.RawMessage }

func (d listedDelivery) Raw() *protocol.RawMessage { return d.raw }
func (listedDelivery) Ack() error                  { return errListedOnly }
func (listedDelivery) Reject(bool) error           { return errListedOnly }

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

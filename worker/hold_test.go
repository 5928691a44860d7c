package worker

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/transport"
)

// holdProbe records what a hold calls back.
type holdProbe struct {
	listed, ready, back chan *job
	due                 chan dueCall
}

type dueCall struct {
	j       *job
	horizon bool
}

func newHoldProbe() *holdProbe {
	return &holdProbe{listed: make(chan *job, 10), ready: make(chan *job, 10), back: make(chan *job, 10), due: make(chan dueCall, 10)}
}

func (p *holdProbe) hooks() holdHooks {
	return holdHooks{
		listed: func(j *job) { p.listed <- j },
		due:    func(j *job, horizon bool) { p.due <- dueCall{j, horizon} },
		ready:  func(j *job) { p.ready <- j },
		back:   func(j *job) { p.back <- j },
	}
}

// sameMessage reports whether a is the job of b's message and delivery: the
// hold keeps a held message, not its job, and gives back another job.
func sameMessage(a, b *job) bool {
	return a != nil && b != nil && a.d == b.d && a.msg != nil && a.msg.ID == b.msg.ID && a.task == b.task
}

func testHold(p *holdProbe, prefetch, maxRise int, maxBytes int64, horizon time.Duration) *hold {
	return newHold(zap.NewNop(), prefetch, maxRise, maxBytes, horizon, horizon > 0, newRateLimits(), protocol.DecodeOptions{}, p.hooks())
}

func TestHoldRaisesTheWindowWhileAMessageWaitsForItsETA(t *testing.T) {
	p := newHoldProbe()
	h := testHold(p, 4, 10, -1, 0)
	cons := newTestConsumer()
	h.start(cons)
	j := testJob(t, "t", "eta-1", nil, TaskOptions{})
	h.eta(j, 20*time.Millisecond, true)
	if got := recv(t, p.listed, "listed"); got != j {
		t.Fatal("another job listed")
	}
	if d := recv(t, p.due, "due"); !sameMessage(d.j, j) || d.horizon {
		t.Fatalf("due %+v", d)
	}
	if got := cons.windows(); !reflect.DeepEqual(got, []int{5, 4}) {
		t.Errorf("windows %v, want [5 4]", got)
	}
	if len(h.scheduled()) != 0 {
		t.Error("a due message is still listed")
	}
}

func TestHoldCapsTheRise(t *testing.T) {
	for _, c := range []struct {
		name     string
		maxRise  int
		maxBytes func(body int64) int64
	}{
		{"messages", 1, func(int64) int64 { return -1 }},
		{"bytes", 10, func(body int64) int64 { return body }},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newHoldProbe()
			a := testJob(t, "t", "a", nil, TaskOptions{})
			b := testJob(t, "t", "b", nil, TaskOptions{})
			h := testHold(p, 2, c.maxRise, c.maxBytes(int64(len(a.d.Raw().Body))), 0)
			cons := newTestConsumer()
			h.start(cons)
			h.eta(a, time.Hour, false)
			h.eta(b, time.Hour, false)
			if got := cons.windows(); !reflect.DeepEqual(got, []int{3}) {
				t.Errorf("windows %v, want [3]: only the first message raises it", got)
			}
			if w, _ := h.setPrefetch(4); w != 5 {
				t.Errorf("window %d after setPrefetch(4), want 5", w)
			}
			if n := len(h.close()); n != 2 {
				t.Errorf("close returned %d messages, want 2", n)
			}
		})
	}
}

func TestHoldWithoutPrefetchLimitRaisesNothing(t *testing.T) {
	p := newHoldProbe()
	h := testHold(p, 0, 10, -1, 0)
	cons := newTestConsumer()
	h.start(cons)
	h.eta(testJob(t, "t", "a", nil, TaskOptions{}), time.Millisecond, false)
	recv(t, p.due, "due")
	if got := cons.windows(); len(got) != 0 {
		t.Errorf("windows %v asked without a prefetch limit", got)
	}
}

func TestHoldKeepsAFarETAOnlyUntilTheHorizon(t *testing.T) {
	p := newHoldProbe()
	h := testHold(p, 4, 10, -1, 10*time.Millisecond)
	j := testJob(t, "t", "far", nil, TaskOptions{})
	h.eta(j, time.Hour, false)
	if d := recv(t, p.due, "due"); !sameMessage(d.j, j) || !d.horizon {
		t.Fatalf("due %+v, want the horizon", d)
	}

	// Without a way to publish it again, there is no horizon.
	h = newHold(zap.NewNop(), 4, 10, -1, 10*time.Millisecond, false, newRateLimits(), protocol.DecodeOptions{}, p.hooks())
	h.eta(j, time.Hour, false)
	if got := h.scheduled(); len(got) != 1 {
		t.Fatalf("scheduled %d", len(got))
	}
	if got := h.close(); len(got) != 1 || !sameMessage(got[0], j) {
		t.Fatalf("close returned %v", got)
	}
	select {
	case d := <-p.due:
		t.Fatalf("due without a horizon: %+v", d)
	default:
	}
}

func TestHoldThrottlesByRateLimit(t *testing.T) {
	p := newHoldProbe()
	h := testHold(p, 4, 10, -1, 0)
	if err := h.limits.set("limited", "10/s"); err != nil {
		t.Fatal(err)
	}
	if h.throttle(testJob(t, "free", "f", nil, TaskOptions{})) {
		t.Fatal("a task without a rate limit waits")
	}
	if h.throttle(testJob(t, "limited", "l1", nil, TaskOptions{})) {
		t.Fatal("the first start of a rate-limited task waits")
	}
	j := testJob(t, "limited", "l2", nil, TaskOptions{})
	if !h.throttle(j) {
		t.Fatal("the second start within the interval does not wait")
	}
	if got := h.throttled(); len(got) != 1 || got[0] != j {
		t.Errorf("throttled %v", got)
	}
	if got := recv(t, p.ready, "ready"); got != j {
		t.Fatal("another job ready")
	}
	if len(h.throttled()) != 0 {
		t.Error("a ready message is still listed")
	}
}

func TestHoldExpediteEndsTheWaitsOfTheGivenIDs(t *testing.T) {
	p := newHoldProbe()
	h := testHold(p, 4, 10, -1, 0)
	if err := h.limits.set("limited", "1/h"); err != nil {
		t.Fatal(err)
	}
	held := testJob(t, "t", "x", nil, TaskOptions{})
	other := testJob(t, "t", "y", nil, TaskOptions{})
	h.eta(held, time.Hour, false)
	h.eta(other, time.Hour, false)
	h.throttle(testJob(t, "limited", "first", nil, TaskOptions{}))
	limited := testJob(t, "limited", "x", nil, TaskOptions{})
	if !h.throttle(limited) {
		t.Fatal("not throttled")
	}
	h.expedite(map[string]bool{"x": true})
	if d := recv(t, p.due, "due"); !sameMessage(d.j, held) {
		t.Fatal("another job due")
	}
	if got := recv(t, p.ready, "ready"); got != limited {
		t.Fatal("another job ready")
	}
	if got := h.close(); len(got) != 1 || !sameMessage(got[0], other) {
		t.Errorf("close returned %v, want only y", got)
	}
}

func TestHoldClosedHandsEverythingBack(t *testing.T) {
	p := newHoldProbe()
	h := testHold(p, 4, 10, -1, 0)
	if err := h.limits.set("limited", "1/h"); err != nil {
		t.Fatal(err)
	}
	held := testJob(t, "t", "held", nil, TaskOptions{})
	h.eta(held, time.Hour, true)
	recv(t, p.listed, "listed")
	h.throttle(testJob(t, "limited", "first", nil, TaskOptions{}))
	limited := testJob(t, "limited", "limited", nil, TaskOptions{})
	h.throttle(limited)
	got := h.close()
	if len(got) != 2 {
		t.Fatalf("close returned %d messages, want 2", len(got))
	}
	if len(h.scheduled())+len(h.throttled()) != 0 {
		t.Error("messages still listed after close")
	}

	late := testJob(t, "t", "late", nil, TaskOptions{})
	h.eta(late, time.Hour, true)
	if recv(t, p.listed, "listed") != late || recv(t, p.back, "back") != late {
		t.Fatal("an ETA message after close is not listed and handed back")
	}
	again := testJob(t, "limited", "again", nil, TaskOptions{})
	if !h.throttle(again) || recv(t, p.back, "back") != again {
		t.Fatal("a throttled message after close is not handed back")
	}
}

func TestHoldPrefetch(t *testing.T) {
	h := testHold(newHoldProbe(), 8, 10, -1, 0)
	if h.prefetchCount() != 8 {
		t.Fatalf("prefetch %d", h.prefetchCount())
	}
	if w, cons := h.setPrefetch(12); w != 12 || cons != nil || h.prefetchCount() != 12 {
		t.Errorf("setPrefetch: window %d, consumer %v, prefetch %d", w, cons, h.prefetchCount())
	}
}

// Held ETA messages that do not raise the window (its rise is capped) take
// at most half of it: the next one is sent back to the broker at once, so
// that ordinary tasks always find room. One whose republish failed is kept.
func TestHoldKeepsHalfTheWindowForOrdinaryTasks(t *testing.T) {
	p := newHoldProbe()
	h := testHold(p, 4, 0, -1, time.Hour)
	h.start(newTestConsumer())
	for i := range 2 {
		j := testJob(t, "t", "in-window-"+string(rune('a'+i)), nil, TaskOptions{})
		h.eta(j, time.Minute, true)
		recv(t, p.listed, "listed")
	}
	over := testJob(t, "t", "over", nil, TaskOptions{})
	h.eta(over, time.Minute, true)
	recv(t, p.listed, "listed")
	if d := recv(t, p.due, "due"); d.j != over || !d.horizon {
		t.Fatalf("due %+v, want the third message sent back", d)
	}
	if n := len(h.scheduled()); n != 2 {
		t.Errorf("%d held, want 2", n)
	}
	over.keepHeld = true
	h.eta(over, time.Minute, false)
	if n := len(h.scheduled()); n != 3 {
		t.Errorf("%d held, want 3: a message whose republish failed stays", n)
	}
	select {
	case d := <-p.due:
		t.Errorf("due %+v", d)
	default:
	}
	h.close()
}

// Without a way to publish again, held messages wait inside the window as
// before.
func TestHoldWithoutRepublishWaitsInTheWindow(t *testing.T) {
	p := newHoldProbe()
	h := testHold(p, 4, 0, -1, 0)
	h.start(newTestConsumer())
	for i := range 4 {
		h.eta(testJob(t, "t", "w-"+string(rune('a'+i)), nil, TaskOptions{}), time.Minute, true)
		recv(t, p.listed, "listed")
	}
	if n := len(h.scheduled()); n != 4 {
		t.Errorf("%d held, want 4", n)
	}
	h.close()
}

// parkingDelivery is a testDelivery whose transport parks it: parked, it
// forgets its message and only settles; unparked, it has the message it
// is given.
type parkingDelivery struct {
	*testDelivery
	parked, unparked int
}

func (d *parkingDelivery) Park() transport.Parked {
	d.parked++
	d.raw = nil
	return parkedTest{d}
}

type parkedTest struct{ d *parkingDelivery }

func (p parkedTest) Ack() error                { return p.d.Ack() }
func (p parkedTest) Reject(requeue bool) error { return p.d.Reject(requeue) }
func (p parkedTest) Unpark(m *protocol.RawMessage) transport.Delivery {
	p.d.unparked++
	p.d.raw = m
	return p.d
}

// parkingJob is a held-ETA job of a message as Celery sends it, on a
// delivery that parks.
func parkingJob(t *testing.T, id string) (*job, *parkingDelivery) {
	t.Helper()
	eta := time.Date(2030, 1, 2, 3, 4, 5, 678901000, time.UTC)
	msg := &protocol.Message{ID: id, Task: "tasks.add", Args: []any{int64(1), "two"}, Kwargs: map[string]any{"k": 3.5},
		ETA: &eta, RootID: id, Origin: "gen1@host", ArgsRepr: "(1, 'two')", KwargsRepr: "{'k': 3.5}"}
	raw, err := protocol.Encode(msg, protocol.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw.Exchange, raw.RoutingKey, raw.Priority, raw.HasPriority, raw.Redelivered = "ex", "celery", 3, true, true
	decoded, err := protocol.Decode(raw, protocol.DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := &parkingDelivery{testDelivery: &testDelivery{raw: raw}}
	return &job{d: d, msg: decoded, task: &Task{Name: "tasks.add"}, received: time.Now()}, d
}

// With a transport that parks deliveries, a held message keeps neither its
// delivery's message nor its decoded one: it is listed, made due and
// handed back from its packed copy, the same message as received.
func TestHoldParksAndUnpacksTheSameMessage(t *testing.T) {
	p := newHoldProbe()
	h := testHold(p, 4, 10, -1, 0)
	j, d := parkingJob(t, "parked-1")
	want := *j.d.Raw()
	wantMsg := *j.msg
	h.eta(j, time.Hour, false)
	if d.parked != 1 || d.raw != nil {
		t.Fatalf("parked %d times, message kept: %v", d.parked, d.raw != nil)
	}

	// Listed for inspect scheduled: the request's fields, no unparking.
	listed := h.scheduled()
	if len(listed) != 1 || d.unparked != 0 {
		t.Fatalf("listed %d, unparked %d", len(listed), d.unparked)
	}
	if l := listed[0]; !reflect.DeepEqual(*l.msg, wantMsg) || !reflect.DeepEqual(*l.d.Raw(), want) {
		t.Errorf("listed\n %+v\nwant\n %+v", *l.msg, wantMsg)
	}
	if err := listed[0].d.Ack(); !errors.Is(err, errListedOnly) {
		t.Errorf("a listed job settled: %v", err)
	}
	if h.scheduledCount() != 1 {
		t.Errorf("count %d", h.scheduledCount())
	}

	// Due (revoked, say): unparked with the message as received.
	h.expedite(map[string]bool{"parked-1": true})
	got := recv(t, p.due, "due").j
	if d.unparked != 1 || got.d != d || !reflect.DeepEqual(*got.d.Raw(), want) || !reflect.DeepEqual(*got.msg, wantMsg) {
		t.Fatalf("due: unparked %d, raw %+v, msg %+v", d.unparked, got.d.Raw(), got.msg)
	}
	// Received is kept to the second.
	if got.task != j.task || got.received.After(j.received) || j.received.Sub(got.received) >= time.Second {
		t.Errorf("task %v, received %v: want %v, %v", got.task, got.received, j.task, j.received)
	}

	// Handed back at shutdown: requeued through the parked delivery.
	j2, d2 := parkingJob(t, "parked-2")
	h.eta(j2, time.Hour, false)
	back := h.close()
	if len(back) != 1 || back[0].msg.ID != "parked-2" || back[0].d != d2 {
		t.Fatalf("close returned %v", back)
	}
	requeue(zap.NewNop(), back[0].d)
	if got := d2.outcome(); !reflect.DeepEqual(got, []string{"requeue"}) {
		t.Errorf("settled %v", got)
	}
}

// A held message due later than the next one is released after it: one
// timer serves them all, soonest first.
func TestHoldReleasesInETAOrder(t *testing.T) {
	p := newHoldProbe()
	h := testHold(p, 4, 10, -1, 0)
	late, _ := parkingJob(t, "late")
	soon := testJob(t, "t", "soon", nil, TaskOptions{})
	h.eta(late, 60*time.Millisecond, false)
	h.eta(soon, 20*time.Millisecond, false)
	if first := recv(t, p.due, "due").j; first.msg.ID != "soon" {
		t.Fatalf("%s due first", first.msg.ID)
	}
	if second := recv(t, p.due, "due").j; second.msg.ID != "late" {
		t.Fatalf("%s due second", second.msg.ID)
	}
	if h.scheduledCount() != 0 {
		t.Errorf("%d still held", h.scheduledCount())
	}
}

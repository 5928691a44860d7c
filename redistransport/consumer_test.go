package redistransport

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gworker/gworker/transport"
)

func ids(ds []*Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Raw().Headers["id"].(string))
	}
	return out
}

// TestPublishConsumeAck: kombu's keys from end to end: the binding set,
// the priority lists, the unacked hash and index while a message is held,
// nothing left after the ack.
func TestPublishConsumeAck(t *testing.T) {
	b := newTestBroker(t, nil)
	ctx := ctxT(t)
	rc := b.client
	if err := b.DeclareTaskQueue(ctx, "q1"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := rc.SIsMember(ctx, b.key("_kombu.binding.q1"), "q1\x06\x16\x06\x16q1").Result(); !ok {
		t.Fatal("binding missing")
	}
	if err := b.Publish(ctx, "q1", "q1", task("a", 0)); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, "", "q1", task("b", 9)); err != nil {
		t.Fatal(err)
	}
	if n, _ := rc.LLen(ctx, b.key("q1\x06\x169")).Result(); n != 1 {
		t.Fatalf("priority 9 list holds %d", n)
	}
	if err := b.Publish(ctx, "q1", "nowhere", task("c", 0)); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("unroutable publish: %v", err)
	}
	c, err := b.NewConsumer(ctx, ConsumerConfig{Queues: []string{"q1"}, Prefetch: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d1, d2 := recv(t, c), recv(t, c)
	if got := ids([]*Delivery{d1, d2}); got[0] != "a" || got[1] != "b" {
		t.Fatalf("order %v: priority 0 first (kombu's inverted priority)", got)
	}
	if d2.Raw().Priority != 9 || d2.Raw().RoutingKey != "q1" || d1.Raw().Exchange != "q1" || string(d1.Raw().Body) != string(task("a", 0).Body) {
		t.Fatalf("delivery: %+v", d2.Raw())
	}
	if n, _ := rc.HLen(ctx, b.key("unacked")).Result(); n != 2 {
		t.Fatalf("unacked holds %d, want 2", n)
	}
	if n, _ := rc.ZCard(ctx, b.key("unacked_index")).Result(); n != 2 {
		t.Fatalf("unacked_index holds %d, want 2", n)
	}
	if err := d1.Ack(); err != nil {
		t.Fatal(err)
	}
	if err := d1.Ack(); !errors.Is(err, ErrAlreadySettled) {
		t.Fatalf("second ack: %v", err)
	}
	if err := d2.Reject(false); err != nil {
		t.Fatal(err)
	}
	if n, _ := rc.HLen(ctx, b.key("unacked")).Result(); n != 0 {
		t.Fatalf("unacked holds %d after settling", n)
	}
	if n, _ := rc.ZCard(ctx, b.key("unacked_index")).Result(); n != 0 {
		t.Fatalf("unacked_index holds %d after settling", n)
	}
}

// A parked delivery drops its message and still settles; unparked, it has
// the message it is given.
func TestParkedDelivery(t *testing.T) {
	b := newTestBroker(t, nil)
	ctx := ctxT(t)
	rc := b.client
	if err := b.DeclareTaskQueue(ctx, "q1"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if err := b.Publish(ctx, "", "q1", task(id, 0)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := b.NewConsumer(ctx, ConsumerConfig{Queues: []string{"q1"}, Prefetch: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d1, d2 := recv(t, c), recv(t, c)
	var _ transport.Parker = d1
	raw := d1.Message
	p1 := d1.Park()
	if qo, ok := p1.(transport.QueueOf); !ok || qo.ConsumedFrom() != "q1" {
		t.Fatal("a parked delivery does not tell its queue")
	}
	if d1.Message.Body != nil || d1.Message.Headers != nil {
		t.Fatal("the parked delivery keeps its message")
	}
	u := p1.Unpark(&raw)
	if string(u.Raw().Body) != string(raw.Body) {
		t.Fatalf("unparked body %q", u.Raw().Body)
	}
	if err := u.Ack(); err != nil {
		t.Fatal(err)
	}
	tags := []string{d1.Tag, d2.Tag}
	if err := d2.Park().Reject(true); err != nil {
		t.Fatal(err)
	}
	// Neither settled delivery is left in unacked (the requeued message
	// may already be fetched again, under a tag of its own).
	for _, tag := range tags {
		if ok, _ := rc.HExists(ctx, b.key("unacked"), tag).Result(); ok {
			t.Fatalf("unacked still holds %s after settling", tag)
		}
	}
	d := recv(t, c)
	if got := ids([]*Delivery{d}); got[0] != "b" || !d.Raw().Redelivered {
		t.Fatalf("requeued %v, redelivered %v: want b, redelivered", got, d.Raw().Redelivered)
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
}

// TestRoundRobin: with two busy queues, deliveries alternate.
func TestRoundRobin(t *testing.T) {
	b := newTestBroker(t, nil)
	ctx := ctxT(t)
	for i := range 3 {
		for _, q := range []string{"qa", "qb"} {
			if err := b.Publish(ctx, "", q, task(fmt.Sprintf("%s%d", q, i), 0)); err != nil {
				t.Fatal(err)
			}
		}
	}
	c, err := b.NewConsumer(ctx, ConsumerConfig{Queues: []string{"qa", "qb"}, Prefetch: 6})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []*Delivery
	for range 6 {
		got = append(got, recv(t, c))
	}
	want := []string{"qa0", "qb0", "qa1", "qb1", "qa2", "qb2"}
	if fmt.Sprint(ids(got)) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", ids(got), want)
	}
	for _, d := range got {
		_ = d.Ack()
	}
}

// TestPrefetchBound: no more than Prefetch messages are taken until one is
// settled; SetPrefetch widens the window.
func TestPrefetchBound(t *testing.T) {
	b := newTestBroker(t, nil)
	ctx := ctxT(t)
	for i := range 5 {
		if err := b.Publish(ctx, "", "qp", task(fmt.Sprint(i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := b.NewConsumer(ctx, ConsumerConfig{Queues: []string{"qp"}, Prefetch: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d0, d1 := recv(t, c), recv(t, c)
	noDelivery(t, c, 300*time.Millisecond)
	if n, _ := b.QueueLength(ctx, "qp"); n != 3 {
		t.Fatalf("queue holds %d, want 3 (prefetch 2)", n)
	}
	_ = d0.Ack()
	d2 := recv(t, c)
	if err := c.SetPrefetch(4); err != nil {
		t.Fatal(err)
	}
	d3, d4 := recv(t, c), recv(t, c)
	for _, d := range []*Delivery{d1, d2, d3, d4} {
		_ = d.Ack()
	}
}

// TestRejectRequeueAndShutdown: reject with requeue goes to the back of
// the queue flagged redelivered (kombu); after Cancel it goes to the head;
// Close puts every held message back at the head, in order, and empties
// the unacked entries.
func TestRejectRequeueAndShutdown(t *testing.T) {
	b := newTestBroker(t, nil)
	ctx := ctxT(t)
	for _, id := range []string{"m1", "m2", "m3", "m4"} {
		if err := b.Publish(ctx, "", "qr", task(id, 0)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := b.NewConsumer(ctx, ConsumerConfig{Queues: []string{"qr"}, Prefetch: 1})
	if err != nil {
		t.Fatal(err)
	}
	d := recv(t, c)
	if d.Raw().Headers["id"] != "m1" {
		t.Fatalf("first %v", d.Raw().Headers["id"])
	}
	if err := d.Reject(true); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for range 4 {
		d = recv(t, c)
		seen = append(seen, d.Raw().Headers["id"].(string))
		if d.Raw().Headers["id"] == "m1" {
			if !d.Raw().Redelivered {
				t.Fatal("requeued message not flagged redelivered")
			}
			_ = d.Ack()
			break
		}
		_ = d.Ack()
	}
	if fmt.Sprint(seen) != "[m2 m3 m4 m1]" {
		t.Fatalf("order after reject(requeue): %v", seen)
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		if err := b.Publish(ctx, "", "qr", task(id, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.SetPrefetch(3); err != nil {
		t.Fatal(err)
	}
	h1, h2 := recv(t, c), recv(t, c)
	if err := c.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	for range c.Deliveries() {
		t.Fatal("delivery after Cancel")
	}
	// n3 was taken but never handed over: it is back at the head now.
	if err := h2.Reject(true); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h1.Ack(); !errors.Is(err, ErrStaleDelivery) {
		t.Fatalf("ack after close: %v", err)
	}
	if n, _ := b.Unacked(ctx); n != 0 {
		t.Fatalf("unacked holds %d after Close", n)
	}
	c2, err := b.NewConsumer(ctx, ConsumerConfig{Queues: []string{"qr"}, Prefetch: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	got := ids([]*Delivery{recv(t, c2), recv(t, c2), recv(t, c2)})
	if fmt.Sprint(got) != "[n1 n2 n3]" {
		t.Fatalf("after shutdown: %v, want [n1 n2 n3]", got)
	}
}

// TestRestoreDeadConsumer: a message taken by a consumer that died (its
// unacked entry is older than the visibility timeout) is restored to the
// front of its queue and delivered again, flagged redelivered; live
// consumers' messages are not restored, however long they are held.
func TestRestoreDeadConsumer(t *testing.T) {
	b := newTestBroker(t, func(c *Config) {
		c.VisibilityTimeout = 2 * time.Second
		c.RestoreInterval = 200 * time.Millisecond
	})
	ctx := ctxT(t)
	for _, id := range []string{"dead", "live"} {
		if err := b.Publish(ctx, "", "qd", task(id, 0)); err != nil {
			t.Fatal(err)
		}
	}
	// The dead consumer: takes one message and vanishes without Close.
	dead, err := b.NewConsumer(ctx, ConsumerConfig{Queues: []string{"qd"}, Prefetch: 1})
	if err != nil {
		t.Fatal(err)
	}
	dd := recv(t, dead)
	if dd.Raw().Headers["id"] != "dead" {
		t.Fatalf("got %v", dd.Raw().Headers["id"])
	}
	dead.bgCancel() // stops refreshing, like a killed process
	dead.bg.Wait()
	live, err := b.NewConsumer(ctx, ConsumerConfig{Queues: []string{"qd"}, Prefetch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	ld := recv(t, live)
	if ld.Raw().Headers["id"] != "live" {
		t.Fatalf("got %v", ld.Raw().Headers["id"])
	}
	// Hold the live message past three visibility timeouts: never restored.
	if err := live.SetPrefetch(2); err != nil {
		t.Fatal(err)
	}
	again := recv(t, live)
	if again.Raw().Headers["id"] != "dead" || !again.Raw().Redelivered {
		t.Fatalf("restored: %v redelivered=%v", again.Raw().Headers["id"], again.Raw().Redelivered)
	}
	_ = again.Ack()
	noDelivery(t, live, 6*time.Second)
	if err := ld.Ack(); err != nil {
		t.Fatal(err)
	}
	// The dead consumer's own delivery is gone from its hands.
	dead.cancelOnce.Do(func() { close(dead.cancelReq) })
	<-dead.loopDone
	if err := dd.Ack(); err != nil {
		t.Logf("late ack of a restored message: %v", err)
	}
	if n, _ := b.Unacked(ctx); n != 0 {
		t.Fatalf("unacked holds %d", n)
	}
	b.mu.Lock()
	delete(b.consumers, dead)
	b.mu.Unlock()
}

// TestBadEnvelope: unreadable messages go to the dead-letter list, the
// consumer goes on.
func TestBadEnvelope(t *testing.T) {
	b := newTestBroker(t, nil)
	ctx := ctxT(t)
	rc := b.client
	for _, bad := range []string{"not json", `{"body": "x", "properties": {"delivery_tag": "t1", "delivery_info": {"exchange": "", "routing_key": "qb"}, "body_encoding": "base64"}}`} {
		if err := rc.LPush(ctx, b.key("qb"), bad).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Publish(ctx, "", "qb", task("good", 0)); err != nil {
		t.Fatal(err)
	}
	c, err := b.NewConsumer(ctx, ConsumerConfig{Queues: []string{"qb"}, Prefetch: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := recv(t, c)
	if d.Raw().Headers["id"] != "good" {
		t.Fatalf("got %v", d.Raw().Headers["id"])
	}
	_ = d.Ack()
	if n, _ := rc.LLen(ctx, b.key(DefaultDeadLetterKey)).Result(); n != 2 {
		t.Fatalf("dead-letter list holds %d, want 2", n)
	}
	if n, _ := b.Unacked(ctx); n != 0 {
		t.Fatalf("unacked holds %d", n)
	}
}

// TestPythonRestoreSkipsRefreshed checks the refresh directly: the index
// score of a held message keeps moving forward.
func TestPythonRestoreSkipsRefreshed(t *testing.T) {
	b := newTestBroker(t, func(c *Config) { c.VisibilityTimeout = 400 * time.Millisecond })
	ctx := ctxT(t)
	if err := b.Publish(ctx, "", "qs", task("x", 0)); err != nil {
		t.Fatal(err)
	}
	c, err := b.NewConsumer(ctx, ConsumerConfig{Queues: []string{"qs"}, Prefetch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := recv(t, c)
	first, err := b.client.ZScore(ctx, b.key("unacked_index"), d.Tag).Result()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := b.client.ZScore(ctx, b.key("unacked_index"), d.Tag).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		if s > first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("score never refreshed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = d.Ack()
}

// TestConcurrentAcks: acknowledgements made at the same time share writes
// and every one of them is done when Ack returns.
func TestConcurrentAcks(t *testing.T) {
	b := newTestBroker(t, nil)
	ctx := ctxT(t)
	const n = 50
	for i := range n {
		if err := b.Publish(ctx, "", "qc", task(fmt.Sprint(i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := b.NewConsumer(ctx, ConsumerConfig{Queues: []string{"qc"}, Prefetch: n})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ds := make([]*Delivery, n)
	for i := range ds {
		ds[i] = recv(t, c)
	}
	errs := make(chan error, n)
	for _, d := range ds {
		go func() { errs <- d.Ack() }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if u, _ := b.Unacked(ctx); u != 0 {
		t.Fatalf("unacked holds %d", u)
	}
	if z, _ := b.client.ZCard(ctx, b.key("unacked_index")).Result(); z != 0 {
		t.Fatalf("unacked_index holds %d", z)
	}
}

func TestPurgeQueue(t *testing.T) {
	b := newTestBroker(t, nil)
	ctx := ctxT(t)
	for i := range 5 {
		if err := b.Publish(ctx, "", "qpurge", task(fmt.Sprint(i), uint8(i*2))); err != nil {
			t.Fatal(err)
		}
	}
	n, err := b.PurgeQueue(ctx, "qpurge")
	if err != nil || n != 5 {
		t.Fatalf("purged %d, %v", n, err)
	}
	if l, _ := b.QueueLength(ctx, "qpurge"); l != 0 {
		t.Fatalf("%d left", l)
	}
}

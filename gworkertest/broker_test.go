package gworkertest_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gworker/gworker/gworkertest"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

func raw(body string) *protocol.RawMessage {
	return &protocol.RawMessage{ContentType: "application/json", ContentEncoding: "utf-8", Body: []byte(body), Headers: map[string]any{"id": body}}
}

// next receives one delivery or fails the test.
func next(t *testing.T, c worker.Consumer) worker.Delivery {
	t.Helper()
	select {
	case d, ok := <-c.Deliveries():
		if !ok {
			t.Fatal("deliveries closed")
		}
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery within 10s")
	}
	return nil
}

func stats(t *testing.T, b *gworkertest.Broker, q string) gworkertest.QueueStats {
	t.Helper()
	st, err := b.Stats(q)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestRouting(t *testing.T) {
	ctx := context.Background()
	b := gworkertest.NewBroker()
	defer b.Close()
	if err := b.Publish(ctx, "", "nowhere", raw("1")); !errors.Is(err, gworkertest.ErrUnroutable) {
		t.Errorf("publish to a missing queue: %v", err)
	}
	if err := b.Publish(ctx, "ex", "k", raw("1")); !errors.Is(err, gworkertest.ErrNoExchange) {
		t.Errorf("publish to a missing exchange: %v", err)
	}
	if err := b.DeclareTaskQueue(ctx, "tasks"); err != nil {
		t.Fatal(err)
	}
	if err := b.DeclareQueue(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	if err := b.Bind(ctx, "fanin", "k", "other"); err != nil {
		t.Fatal(err)
	}
	if err := b.Bind(ctx, "fanin", "k", "missing"); !errors.Is(err, gworkertest.ErrNoQueue) {
		t.Errorf("bind to a missing queue: %v", err)
	}
	for _, r := range []struct{ ex, key string }{{"", "tasks"}, {"tasks", "tasks"}, {"fanin", "k"}, {"", "other"}} {
		if err := b.Publish(ctx, r.ex, r.key, raw(r.ex+"/"+r.key)); err != nil {
			t.Errorf("publish %q/%q: %v", r.ex, r.key, err)
		}
	}
	if err := b.Publish(ctx, "tasks", "other", raw("x")); !errors.Is(err, gworkertest.ErrUnroutable) {
		t.Errorf("unbound routing key: %v", err)
	}
	msgs, _ := b.Messages("tasks")
	if len(msgs) != 2 || string(msgs[0].Body) != "/tasks" || msgs[1].Exchange != "tasks" || msgs[1].RoutingKey != "tasks" {
		t.Errorf("tasks queue: %+v", msgs)
	}
	msgs, _ = b.Messages("other")
	if len(msgs) != 2 || string(msgs[0].Body) != "fanin/k" || string(msgs[1].Body) != "/other" {
		t.Errorf("other queue: %+v", msgs)
	}
	if err := b.Publish(ctx, "", "tasks", &protocol.RawMessage{Expiration: "soon"}); err == nil {
		t.Error("a bad expiration was accepted")
	}
}

func TestPublishCopiesTheMessage(t *testing.T) {
	ctx := context.Background()
	b := gworkertest.NewBroker()
	defer b.Close()
	_ = b.DeclareQueue(ctx, "q")
	m := &protocol.RawMessage{Body: []byte("abc"), Headers: map[string]any{"l": []any{int64(1)}}}
	if err := b.Publish(ctx, "", "q", m); err != nil {
		t.Fatal(err)
	}
	m.Body[0] = 'X'
	m.Headers["l"].([]any)[0] = "changed"
	msgs, _ := b.Messages("q")
	if string(msgs[0].Body) != "abc" || msgs[0].Headers["l"].([]any)[0] != int64(1) {
		t.Errorf("the queued message changed with the publisher's: %+v", msgs[0])
	}
}

func TestPrefetchBoundsUnacknowledged(t *testing.T) {
	ctx := context.Background()
	b := gworkertest.NewBroker()
	defer b.Close()
	_ = b.DeclareTaskQueue(ctx, "q")
	for i := 0; i < 6; i++ {
		_ = b.Publish(ctx, "", "q", raw(fmt.Sprint(i)))
	}
	c, err := b.Consume(ctx, []string{"q"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d0, d1 := next(t, c), next(t, c)
	if string(d0.Raw().Body) != "0" || string(d1.Raw().Body) != "1" {
		t.Fatalf("order: %s %s", d0.Raw().Body, d1.Raw().Body)
	}
	// The window is full: nothing more leaves the queue.
	if st := stats(t, b, "q"); st.Ready != 4 || st.Unacked != 2 {
		t.Fatalf("with a full window: %+v", st)
	}
	if err := d0.Ack(); err != nil {
		t.Fatal(err)
	}
	if d := next(t, c); string(d.Raw().Body) != "2" {
		t.Fatalf("after an ack: %s", d.Raw().Body)
	}
	if st := stats(t, b, "q"); st.Ready != 3 || st.Unacked != 2 {
		t.Fatalf("after an ack: %+v", st)
	}
	if err := c.SetPrefetch(4); err != nil {
		t.Fatal(err)
	}
	next(t, c)
	next(t, c)
	if st := stats(t, b, "q"); st.Ready != 1 || st.Unacked != 4 {
		t.Fatalf("after raising the window: %+v", st)
	}
	if err := c.SetPrefetch(0); err != nil {
		t.Fatal(err)
	}
	next(t, c) // no bound
	if err := c.SetPrefetch(-1); err == nil {
		t.Error("negative prefetch accepted")
	}
}

func TestRejectRequeueAndDeadLetter(t *testing.T) {
	ctx := context.Background()
	b := gworkertest.NewBroker()
	defer b.Close()
	for _, s := range []string{"a", "b", "c"} {
		_ = b.DeclareTaskQueue(ctx, "q")
		_ = b.Publish(ctx, "", "q", raw(s))
	}
	c, _ := b.Consume(ctx, []string{"q"}, 0)
	defer c.Close()
	a, bb := next(t, c), next(t, c)
	if a.Raw().Redelivered {
		t.Error("first delivery marked redelivered")
	}
	if n, ok := a.(worker.DeliveryCounter).DeliveryCount(); !ok || n != 0 {
		t.Errorf("first delivery count: %d %v", n, ok)
	}
	// Requeued messages go back to where they were, ahead of later ones.
	// (Cancelled first, so that they are not delivered again at once.)
	if err := c.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	for range c.Deliveries() {
		t.Error("a delivery after cancel")
	}
	if err := bb.Reject(true); err != nil {
		t.Fatal(err)
	}
	if err := a.Reject(true); err != nil {
		t.Fatal(err)
	}
	msgs, _ := b.Messages("q")
	var got []string
	for _, m := range msgs {
		got = append(got, fmt.Sprintf("%s:%v", m.Body, m.Redelivered))
	}
	if fmt.Sprint(got) != "[a:true b:true c:false]" {
		t.Errorf("queue after requeue: %v", got)
	}
	c2, _ := b.Consume(ctx, []string{"q"}, 0)
	defer c2.Close()
	var last worker.Delivery
	for i := 0; i < 3; i++ {
		last = next(t, c2)
		if i < 2 {
			if !last.Raw().Redelivered {
				t.Errorf("%s not marked redelivered", last.Raw().Body)
			}
			if n, _ := last.(worker.DeliveryCounter).DeliveryCount(); n != 1 {
				t.Errorf("%s: delivery count %d, want 1", last.Raw().Body, n)
			}
			if err := last.Ack(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := last.Reject(false); err != nil {
		t.Fatal(err)
	}
	if err := last.Ack(); !errors.Is(err, gworkertest.ErrSettled) {
		t.Errorf("ack after reject: %v", err)
	}
	dl := b.DeadLetters()
	if len(dl) != 1 || dl[0].Queue != "q" || dl[0].Reason != gworkertest.ReasonRejected || string(dl[0].Raw.Body) != "c" {
		t.Errorf("dead letters: %+v", dl)
	}
	if st := stats(t, b, "q"); st != (gworkertest.QueueStats{}) {
		t.Errorf("queue not empty: %+v", st)
	}
}

func TestCloseReturnsUnacknowledgedInOrder(t *testing.T) {
	ctx := context.Background()
	b := gworkertest.NewBroker()
	defer b.Close()
	_ = b.DeclareTaskQueue(ctx, "q")
	for i := 0; i < 4; i++ {
		_ = b.Publish(ctx, "", "q", raw(fmt.Sprint(i)))
	}
	c, _ := b.Consume(ctx, []string{"q"}, 3)
	d0, d1, d2 := next(t, c), next(t, c), next(t, c)
	if err := d1.Ack(); err != nil {
		t.Fatal(err)
	}
	// Cancel: no more deliveries, but the ones received stay valid.
	if err := c.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-c.Deliveries(); ok {
		t.Fatal("a delivery after cancel")
	}
	if err := d2.Ack(); err != nil {
		t.Fatalf("ack after cancel: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d0.Ack(); !errors.Is(err, gworkertest.ErrConsumerClosed) {
		t.Errorf("ack after close: %v", err)
	}
	msgs, _ := b.Messages("q")
	var got []string
	for _, m := range msgs {
		got = append(got, fmt.Sprintf("%s:%v", m.Body, m.Redelivered))
	}
	if fmt.Sprint(got) != "[0:true 3:false]" {
		t.Errorf("queue after close: %v", got)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestBrokerCloseEndsConsumers(t *testing.T) {
	ctx := context.Background()
	b := gworkertest.NewBroker()
	c, err := b.Consume(ctx, []string{"q"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Publish(ctx, "", "q", raw("x"))
	d := next(t, c)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-c.Deliveries(); ok {
		t.Fatal("deliveries still open")
	}
	if err := d.Ack(); !errors.Is(err, gworkertest.ErrConsumerClosed) {
		t.Errorf("ack after the broker closed: %v", err)
	}
	if st := stats(t, b, "q"); st.Ready != 1 {
		t.Errorf("the unacknowledged message was lost: %+v", st)
	}
	if err := b.Publish(ctx, "", "q", raw("y")); !errors.Is(err, gworkertest.ErrClosed) {
		t.Errorf("publish after close: %v", err)
	}
	if _, err := b.Consume(ctx, []string{"q"}, 1); !errors.Is(err, gworkertest.ErrClosed) {
		t.Errorf("consume after close: %v", err)
	}
}

func TestExpiredMessagesAreDeadLettered(t *testing.T) {
	ctx := context.Background()
	b := gworkertest.NewBroker()
	defer b.Close()
	_ = b.DeclareTaskQueue(ctx, "q")
	m := raw("old")
	m.Expiration = "0"
	_ = b.Publish(ctx, "", "q", m)
	_ = b.Publish(ctx, "", "q", raw("fresh"))
	c, _ := b.Consume(ctx, []string{"q"}, 0)
	defer c.Close()
	if d := next(t, c); string(d.Raw().Body) != "fresh" {
		t.Errorf("delivered %s", d.Raw().Body)
	}
	dl := b.DeadLetters()
	if len(dl) != 1 || dl[0].Reason != gworkertest.ReasonExpired || string(dl[0].Raw.Body) != "old" {
		t.Errorf("dead letters: %+v", dl)
	}
}

// Many publishers and competing consumers: every message is delivered and
// acknowledged exactly once, and WaitEmpty sees the end.
func TestConcurrentPublishAndConsume(t *testing.T) {
	ctx := context.Background()
	b := gworkertest.NewBroker()
	defer b.Close()
	_ = b.DeclareTaskQueue(ctx, "q")
	const publishers, each = 4, 200
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	var consumers []worker.Consumer
	for i := 0; i < 3; i++ {
		c, err := b.Consume(ctx, []string{"q"}, 5)
		if err != nil {
			t.Fatal(err)
		}
		consumers = append(consumers, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for d := range c.Deliveries() {
				n++
				if n%7 == 0 && !d.Raw().Redelivered {
					_ = d.Reject(true)
					continue
				}
				mu.Lock()
				seen[string(d.Raw().Body)]++
				mu.Unlock()
				if err := d.Ack(); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	var pw sync.WaitGroup
	for p := 0; p < publishers; p++ {
		pw.Add(1)
		go func() {
			defer pw.Done()
			for i := 0; i < each; i++ {
				if err := b.Publish(ctx, "q", "q", raw(fmt.Sprintf("%d-%d", p, i))); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	pw.Wait()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := b.WaitEmpty(wctx, "q"); err != nil {
		t.Fatal(err)
	}
	for _, c := range consumers {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != publishers*each {
		t.Errorf("%d distinct messages, want %d", len(seen), publishers*each)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s acknowledged %d times", k, n)
		}
	}
}

package redistransport

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gworker/gworker/transport"
)

var _ transport.QueueAdder = (*Consumer)(nil)

// TestAddAndCancelQueue: an added queue is taken by the same consumer; a
// cancelled one is no longer taken, and the messages the consumer took
// from it and did not hand over go back to its head, in order.
func TestAddAndCancelQueue(t *testing.T) {
	b := newTestBroker(t, nil)
	ctx := ctxT(t)
	c, err := b.NewConsumer(ctx, ConsumerConfig{Queues: []string{"main"}, Prefetch: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, id := range []string{"x1", "x2", "x3"} {
		if err := b.Publish(ctx, "", "extra", task(id, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.AddQueue(ctx, "extra"); err != nil {
		t.Fatal(err)
	}
	if err := c.AddQueue(ctx, "extra"); err != nil {
		t.Fatalf("adding a consumed queue again: %v", err)
	}
	if got := c.Queues(); !slices.Equal(got, []string{"main", "extra"}) {
		t.Fatalf("queues %v", got)
	}
	// The binding was declared, as Consume declares it.
	if err := b.Publish(ctx, "extra", "extra", task("x4", 0)); err != nil {
		t.Fatalf("publish through the added queue's exchange: %v", err)
	}
	// One fetch takes the four messages; one is handed over, three wait.
	d := recv(t, c)
	if id := d.Raw().Headers["id"]; id != "x1" || d.Queue != "extra" {
		t.Fatalf("got %v from %s", id, d.Queue)
	}
	if err := c.CancelQueue(ctx, "extra"); err != nil {
		t.Fatal(err)
	}
	if err := c.CancelQueue(ctx, "extra"); !errors.Is(err, transport.ErrNotConsuming) {
		t.Fatalf("cancelling it again: %v", err)
	}
	if err := c.CancelQueue(ctx, "main"); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("cancelling the last queue: %v", err)
	}
	// What was taken and not handed over is back, at the head, in order.
	var back []string
	n, err := b.QueueLength(ctx, "extra")
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		m, err := b.Pop(ctx, time.Second, "extra")
		if err != nil || m == nil {
			t.Fatalf("pop: %v %v", m, err)
		}
		back = append(back, m.Headers["id"].(string))
	}
	if !slices.Equal(back, []string{"x2", "x3", "x4"}) {
		t.Fatalf("extra holds %v, want x2 x3 x4", back)
	}
	// The delivery handed over stays valid.
	if err := d.Ack(); err != nil {
		t.Fatalf("ack after cancel: %v", err)
	}
	if n := c.Outstanding(); n != 0 {
		t.Fatalf("%d messages still held", n)
	}
	// The cancelled queue is no longer taken: a message published to it
	// before one to main stays there.
	if err := b.Publish(ctx, "", "extra", task("late", 0)); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, "", "main", task("m1", 0)); err != nil {
		t.Fatal(err)
	}
	if d := recv(t, c); d.Raw().Headers["id"] != "m1" {
		t.Fatalf("got %v, want m1", d.Raw().Headers["id"])
	} else {
		_ = d.Ack()
	}
	if n, _ := b.QueueLength(ctx, "extra"); n != 1 {
		t.Fatalf("extra holds %d, want the late message", n)
	}
	if n, _ := b.Unacked(ctx); n != 0 {
		t.Fatalf("unacked holds %d", n)
	}
}

// TestManyAddedQueuesShareOneConnection: 80 added queues are served by the
// consumer's one fetch loop: the pool never waits for a connection and the
// broker keeps answering.
func TestManyAddedQueuesShareOneConnection(t *testing.T) {
	b := newTestBroker(t, func(c *Config) { c.MaxConnections = 10 })
	ctx := ctxT(t)
	c, err := b.NewConsumer(ctx, ConsumerConfig{Queues: []string{"main"}, Prefetch: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 80
	for i := range n {
		if err := c.AddQueue(ctx, fmt.Sprintf("added%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if err := b.Publish(ctx, "", fmt.Sprintf("added%d", i), task(fmt.Sprint(i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for range n {
		d := recv(t, c)
		seen[d.Queue] = true
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != n {
		t.Fatalf("messages from %d queues, want %d", len(seen), n)
	}
	if _, err := b.QueueLength(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	st := b.Client().PoolStats()
	t.Logf("pool: %d connections, %d idle, %d waits timed out", st.TotalConns, st.IdleConns, st.Timeouts)
	if st.Timeouts != 0 || st.TotalConns >= 10 {
		t.Fatalf("pool stats %+v: the added queues hold connections", st)
	}
}

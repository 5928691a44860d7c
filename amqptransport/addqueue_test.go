package amqptransport

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gworker/gworker/transport"
)

// channelRow is a channel of a connection as rabbitmqctl lists it.
type channelRow struct {
	consumers, prefetch, globalPrefetch, unacked int
}

// connPid returns the pid of the connection named name ("" when none).
func connPid(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", "-q", "list_connections", "pid", "client_properties").CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl list_connections: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if m := connRe.FindStringSubmatch(line); m != nil && m[2] == name {
			return m[1]
		}
	}
	return ""
}

// channelsOf lists the channels with consumers of the connection pid.
func channelsOf(t *testing.T, pid string) []channelRow {
	t.Helper()
	if pid == "" {
		return nil
	}
	out, err := exec.Command("rabbitmqctl", "-q", "list_channels", "connection", "consumer_count", "prefetch_count",
		"global_prefetch_count", "messages_unacknowledged").CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl list_channels: %v\n%s", err, out)
	}
	var rows []channelRow
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 5 || f[0] != pid {
			continue
		}
		var r channelRow
		for i, p := range []*int{&r.consumers, &r.prefetch, &r.globalPrefetch, &r.unacked} {
			*p, _ = strconv.Atoi(f[i+1])
		}
		if r.consumers > 0 {
			rows = append(rows, r)
		}
	}
	return rows
}

// consumedOnce waits until each queue has one consumer and each of gone
// none (passive declarations).
func consumedOnce(t *testing.T, b *Broker, queues []string, gone ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	eventually(t, 30*time.Second, fmt.Sprintf("one consumer on each of %v, none on %v", queues, gone), func() bool {
		for _, q := range queues {
			if n, err := b.QueueConsumers(ctx, q); err != nil || n != 1 {
				return false
			}
		}
		for _, q := range gone {
			if n, err := b.QueueConsumers(ctx, q); err != nil || n != 0 {
				return false
			}
		}
		return true
	})
}

// unackedOn returns the broker's count of unacknowledged messages on the
// channels of the connection named name, as rabbitmqctl lists them; ok is
// false when it lists none (a busy node answers so now and then).
func unackedOn(t *testing.T, name string) (n int, ok bool) {
	t.Helper()
	rows := channelsOf(t, connPid(t, name))
	for _, r := range rows {
		n += r.unacked
	}
	return n, len(rows) > 0
}

// Queues added to a running consumer (add_consumer) are consumed on its
// channel and share its global prefetch window: with 5 added queues and a
// window of 5, the broker never has more than 5 messages unacknowledged,
// where a consumer per queue held 6 × 5. The added queues are consumed
// again after the connection is closed under the consumer, and a
// cancelled one (cancel_consumer) is not.
func TestAddedQueuesShareTheChannelPrefetch(t *testing.T) {
	_, u := vhostURL(t)
	f := newFixture(t, func(c *Config) { c.URL = u })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const window, added, perQueue = 5, 5, 4
	tc, err := f.b.Consume(ctx, []string{"startup"}, window)
	if err != nil {
		t.Fatal(err)
	}
	c := tc.(*Consumer)
	defer c.Close()
	names := []string{"startup"}
	for i := range added {
		n := fmt.Sprint("added", i)
		if err := c.AddQueue(ctx, n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if err := c.AddQueue(ctx, "added0"); err != nil {
		t.Fatalf("adding a consumed queue: %v", err)
	}
	consumedOnce(t, f.b, names)
	for _, n := range names {
		f.publishN(ctx, n, perQueue)
	}

	// Take what the broker hands out without settling it; once nothing
	// more comes, the broker's count of unacknowledged messages is the
	// whole budget in use. Then settle and go on.
	seen := map[string]int{}
	epochs := map[uint64]bool{}
	maxUnacked, total := 0, len(names)*perQueue
	for got := 0; got < total; {
		var held []*Delivery
		for {
			select {
			case d := <-c.Deliveries():
				held = append(held, d.(*Delivery))
				continue
			case <-time.After(300 * time.Millisecond):
			}
			break
		}
		if len(held) == 0 {
			t.Fatalf("%d of %d messages received; %v", got, total, seen)
		}
		// Ours, and the broker's count on the first plateau, when
		// rabbitmqctl answers (it is slow).
		sum, listed := 0, false
		if got == 0 {
			sum, listed = unackedOn(t, f.name)
		}
		maxUnacked = max(maxUnacked, sum, len(held))
		if sum > window || len(held) > window {
			t.Fatalf("%d unacknowledged (listed: %v; %d held here) with a window of %d shared by %d queues",
				sum, listed, len(held), window, len(names))
		}
		for _, d := range held {
			seen[d.Queue]++
			epochs[d.Epoch()] = true
			if err := d.Ack(); err != nil {
				t.Fatal(err)
			}
		}
		got += len(held)
	}
	for _, n := range names {
		if seen[n] != perQueue {
			t.Errorf("queue %s: %d messages received, want %d", n, seen[n], perQueue)
		}
	}
	if len(epochs) != 1 {
		t.Errorf("deliveries came on %d channels, want the one channel", len(epochs))
	}
	t.Logf("%d queues, window %d: %d messages, at most %d unacknowledged", len(names), window, total, maxUnacked)

	// cancel_consumer: the queue loses its consumer at once.
	if err := c.CancelQueue(ctx, "added0"); err != nil {
		t.Fatal(err)
	}
	if err := c.CancelQueue(ctx, "added0"); !errors.Is(err, transport.ErrNotConsuming) {
		t.Fatalf("second CancelQueue: %v, want ErrNotConsuming", err)
	}
	if n, err := f.b.QueueConsumers(ctx, "added0"); err != nil || n != 0 {
		t.Fatalf("added0 has %d consumers (%v) after CancelQueue", n, err)
	}
	// A queue added after a cancellation gets a tag of its own (a reused
	// tag closes the connection).
	if err := c.AddQueue(ctx, "added5"); err != nil {
		t.Fatal(err)
	}
	consumedOnce(t, f.b, []string{"startup", "added1", "added2", "added3", "added4", "added5"}, "added0")
	if r := f.b.Reconnects(); r != 0 {
		t.Fatalf("%d reconnects before the forced close", r)
	}

	// A forced close: the added queues are consumed again, the cancelled
	// one is not.
	f.killConnections(false)
	eventually(t, 30*time.Second, "reconnect", func() bool { return f.b.Reconnects() > 0 })
	consumedOnce(t, f.b, []string{"startup", "added1", "added2", "added3", "added4", "added5"}, "added0")
	f.publishN(ctx, "added0", 3)
	f.publishN(ctx, "added3", 1)
	f.publishN(ctx, "added5", 1)
	got := map[string]int{}
	after := map[uint64]bool{}
	for range 2 {
		d := recv(t, c, 20*time.Second)
		got[d.Queue]++
		after[d.Epoch()] = true
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if got["added3"] != 1 || got["added5"] != 1 {
		t.Fatalf("after the reconnect received %v, want one of added3 and added5", got)
	}
	if len(after) != 1 || epochs[keys(after)[0]] {
		t.Errorf("after the reconnect deliveries came on channels %v (before: %v), want one new channel", after, epochs)
	}
	if n, err := f.b.QueueLength(ctx, "added0"); err != nil || n != 3 {
		t.Fatalf("cancelled queue added0 has %d ready (%v), want its 3 messages left", n, err)
	}
	if n, err := f.b.QueueConsumers(ctx, "added0"); err != nil || n != 0 {
		t.Fatalf("cancelled queue added0 has %d consumers (%v) after the reconnect", n, err)
	}
	if err := c.CancelQueue(ctx, "startup"); err != nil {
		t.Fatalf("cancelling a start-up queue: %v", err)
	}
	for _, n := range []string{"added1", "added2", "added3", "added4"} {
		if err := c.CancelQueue(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.CancelQueue(ctx, "added5"); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("cancelling the last queue: %v, want ErrInvalidConfig", err)
	}
	consumedOnce(t, f.b, []string{"added5"}, "startup", "added1", "added4")
}

// A quorum queue cannot join a channel of global QoS (RabbitMQ would close
// the connection): AddQueue refuses it and the consumer goes on. When the
// start-up queue is a quorum queue the channel uses per-consumer QoS and
// an added quorum queue is consumed with the same count.
func TestAddQuorumQueue(t *testing.T) {
	_, u := vhostURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	declareQuorum := func(name string) {
		conn, err := amqp.Dial(u)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ch.QueueDeclare(name, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("global", func(t *testing.T) {
		f := newFixture(t, func(c *Config) { c.URL = u })
		declareQuorum("q-quorum")
		tc, err := f.b.Consume(ctx, []string{"classic"}, 4)
		if err != nil {
			t.Fatal(err)
		}
		c := tc.(*Consumer)
		defer c.Close()
		if err := c.AddQueue(ctx, "q-quorum"); !errors.Is(err, ErrGlobalQoS) || !errors.Is(err, transport.ErrSeparateConsumer) {
			t.Fatalf("AddQueue of a quorum queue: %v, want ErrGlobalQoS and transport.ErrSeparateConsumer", err)
		}
		if qs := c.Queues(); len(qs) != 1 {
			t.Fatalf("queues %v after a refused AddQueue", qs)
		}
		f.publishN(ctx, "classic", 1)
		if err := recv(t, c, 10*time.Second).Ack(); err != nil {
			t.Fatal(err)
		}
		if r := f.b.Reconnects(); r != 0 {
			t.Fatalf("%d reconnects: the refused queue closed the connection", r)
		}
	})

	t.Run("per-consumer", func(t *testing.T) {
		f := newFixture(t, func(c *Config) { c.URL = u; c.DefaultQueueType = QueueTypeQuorum })
		tc, err := f.b.Consume(ctx, []string{"qq-startup"}, 3)
		if err != nil {
			t.Fatal(err)
		}
		c := tc.(*Consumer)
		defer c.Close()
		if err := c.AddQueue(ctx, "qq-added"); err != nil {
			t.Fatal(err)
		}
		consumedOnce(t, f.b, []string{"qq-startup", "qq-added"})
		f.publishN(ctx, "qq-added", 2)
		for range 2 {
			d := recv(t, c, 10*time.Second)
			if d.Queue != "qq-added" {
				t.Fatalf("delivery from %q", d.Queue)
			}
			if n, ok := d.DeliveryCount(); !ok || n != 0 {
				t.Fatalf("DeliveryCount %d %v on a quorum queue's first delivery", n, ok)
			}
			if err := d.Ack(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// The number of added queues is bounded.
func TestAddQueueBound(t *testing.T) {
	_, u := vhostURL(t)
	f := newFixture(t, func(c *Config) { c.URL = u })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{f.b.TaskQueue("startup")}, Prefetch: 2, GlobalQoS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range MaxAddedQueues {
		if err := c.AddQueue(ctx, fmt.Sprint("b", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.AddQueue(ctx, "one-more"); !errors.Is(err, ErrTooManyQueues) {
		t.Fatalf("AddQueue beyond %d: %v, want ErrTooManyQueues", MaxAddedQueues, err)
	}
	if err := c.CancelQueue(ctx, "b0"); err != nil {
		t.Fatal(err)
	}
	if err := c.AddQueue(ctx, "one-more"); err != nil {
		t.Fatalf("AddQueue after a cancel: %v", err)
	}
	consumedOnce(t, f.b, []string{"startup", "b1", "b99", "one-more"}, "b0")
}

func keys[K comparable, V any](m map[K]V) []K {
	var ks []K
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

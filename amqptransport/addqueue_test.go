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

// oneChannel waits until the connection has one channel with consumers,
// with want of them, and returns it.
func oneChannel(t *testing.T, name string, want int) channelRow {
	t.Helper()
	var rows []channelRow
	deadline := time.Now().Add(20 * time.Second)
	for {
		rows = channelsOf(t, connPid(t, name))
		if len(rows) == 1 && rows[0].consumers == want {
			return rows[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("channels with consumers %+v, want one with %d consumers", rows, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
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
	ch := oneChannel(t, f.name, added+1)
	if ch.globalPrefetch != window {
		t.Fatalf("channel %+v: want a global prefetch of %d", ch, window)
	}
	for _, n := range names {
		f.publishN(ctx, n, perQueue)
	}

	// Take what the broker hands out without settling it; once nothing
	// more comes, the broker's count of unacknowledged messages is the
	// whole budget in use. Then settle and go on.
	pid := connPid(t, f.name)
	seen := map[string]int{}
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
		sum := 0
		for _, r := range channelsOf(t, pid) {
			sum += r.unacked
		}
		maxUnacked = max(maxUnacked, sum, len(held))
		if sum > window || len(held) > window {
			t.Fatalf("%d unacknowledged (%d held here) with a window of %d shared by %d queues", sum, len(held), window, len(names))
		}
		for _, d := range held {
			seen[d.Queue]++
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
	oneChannel(t, f.name, added+1)
	if r := f.b.Reconnects(); r != 0 {
		t.Fatalf("%d reconnects before the forced close", r)
	}

	// A forced close: the added queues are consumed again, the cancelled
	// one is not.
	f.killConnections(false)
	eventually(t, 30*time.Second, "reconnect", func() bool { return f.b.Reconnects() > 0 })
	ch = oneChannel(t, f.name, added+1)
	if ch.globalPrefetch != window {
		t.Fatalf("after the reconnect, channel %+v: want a global prefetch of %d", ch, window)
	}
	f.publishN(ctx, "added0", 3)
	f.publishN(ctx, "added3", 1)
	f.publishN(ctx, "added5", 1)
	got := map[string]int{}
	for range 2 {
		d := recv(t, c, 20*time.Second)
		got[d.Queue]++
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if got["added3"] != 1 || got["added5"] != 1 {
		t.Fatalf("after the reconnect received %v, want one of added3 and added5", got)
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
	oneChannel(t, f.name, 1)
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
		ch := oneChannel(t, f.name, 2)
		if ch.globalPrefetch != 0 || ch.prefetch != 3 {
			t.Fatalf("channel %+v: want per-consumer prefetch 3", ch)
		}
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
	oneChannel(t, f.name, MaxAddedQueues+1)
}

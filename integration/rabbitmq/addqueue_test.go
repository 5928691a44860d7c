package rabbitmq_test

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/transport"
	"github.com/gworker/gworker/worker"
)

// countingBroker counts the consumers a worker starts, and the deliveries
// the worker holds unsettled: what the broker may hand out is bounded by
// the prefetch window.
type countingBroker struct {
	*amqptransport.Broker
	mu       sync.Mutex
	consumes int
	held     int // deliveries handed to the worker and not settled
	peak     int // the most held at once
}

func (b *countingBroker) Consume(ctx context.Context, queues []string, prefetch int) (worker.Consumer, error) {
	c, err := b.Broker.Consume(ctx, queues, prefetch)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.consumes++
	b.mu.Unlock()
	cc := &countingConsumer{Consumer: c.(*amqptransport.Consumer), b: b,
		out: make(chan transport.Delivery), closed: make(chan struct{})}
	go cc.forward()
	return cc, nil
}

func (b *countingBroker) add(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held += n
	b.peak = max(b.peak, b.held)
}

// countingConsumer is the transport's consumer (AddQueue and CancelQueue
// included) whose deliveries are counted.
type countingConsumer struct {
	*amqptransport.Consumer
	b      *countingBroker
	out    chan transport.Delivery
	once   sync.Once
	closed chan struct{}
}

func (c *countingConsumer) Deliveries() <-chan transport.Delivery { return c.out }

func (c *countingConsumer) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Consumer.Close()
}

func (c *countingConsumer) forward() {
	defer close(c.out)
	for d := range c.Consumer.Deliveries() {
		c.b.add(1)
		select {
		case c.out <- &countedDelivery{Delivery: d, b: c.b}:
		case <-c.closed:
			for range c.Consumer.Deliveries() {
			}
			return
		}
	}
}

type countedDelivery struct {
	transport.Delivery
	b    *countingBroker
	once sync.Once
}

func (d *countedDelivery) settled() { d.once.Do(func() { d.b.add(-1) }) }

func (d *countedDelivery) Ack() error {
	d.settled()
	return d.Delivery.Ack()
}

func (d *countedDelivery) Reject(requeue bool) error {
	d.settled()
	return d.Delivery.Reject(requeue)
}

// consumerChannels returns, for the connection named name, the number of
// consumers and of unacknowledged messages of each of its channels that
// has consumers, as rabbitmqctl lists them.
func consumerChannels(t *testing.T, name string) (consumers, unacked []int) {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", "-q", "list_connections", "pid", "client_properties").CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl list_connections: %v\n%s", err, out)
	}
	pid := ""
	for _, line := range strings.Split(string(out), "\n") {
		if m := lostAckConnRe.FindStringSubmatch(line); m != nil && m[2] == name {
			pid = m[1]
		}
	}
	if pid == "" {
		t.Logf("no connection named %s listed:\n%s", name, out)
		return nil, nil
	}
	out, err = exec.Command("rabbitmqctl", "-q", "list_channels", "connection", "consumer_count", "messages_unacknowledged").CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl list_channels: %v\n%s", err, out)
	}
	defer func() {
		if len(consumers) == 0 {
			t.Logf("no channel of %s with consumers listed:\n%s", pid, out)
		}
	}()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == pid && f[1] != "0" {
			n, _ := strconv.Atoi(f[1])
			u, _ := strconv.Atoi(f[2])
			consumers = append(consumers, n)
			unacked = append(unacked, u)
		}
	}
	return consumers, unacked
}

// Queues added to a worker on RabbitMQ (add_consumer) are consumed on the
// channel of its start-up queue and share its prefetch window: with 10
// added queues full of acks_late tasks that wait, the broker holds at most
// concurrency × prefetch multiplier messages unacknowledged for the
// worker, where a consumer per added queue held that many for each queue.
// The added queues' tasks run, go on running after the connection is
// closed under the worker, and a cancelled queue (cancel_consumer) gets no
// more of them.
func TestAddedQueuesShareThePrefetchWindow(t *testing.T) {
	e := newPoisonEnv(t, "", "")
	const added, perQueue, slots, multiplier = 10, 5, 2, 2
	const window = slots * multiplier
	connName := "gworker-addq-" + testenv.Suffix()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	wb, err := amqptransport.Dial(ctx, amqptransport.Config{URL: e.url, ConnectionName: connName,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wb.Close() })

	release := make(chan struct{})
	ran := make(chan string, added*perQueue+10)
	reg := worker.NewRegistry()
	reg.MustRegister("addq.wait", func(ctx context.Context, queue string) error {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		ran <- queue
		return nil
	})
	b := &countingBroker{Broker: wb}
	// A classic queue the worker declares: its channel uses global QoS.
	// (The env's queue, declared with other arguments, is adopted as a
	// queue of unknown type, consumed with per-consumer QoS, where each
	// queue's consumer gets the count, as with kombu.)
	w, err := worker.New(worker.Config{Registry: reg, Broker: b, Queues: []string{"addq-startup"}, Concurrency: slots,
		PrefetchMultiplier: multiplier, AcksLate: true, DisableFollowups: true, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(wctx) }()
	released := false
	defer func() {
		if !released {
			close(release)
		}
		stop()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	select {
	case <-w.Ready():
	case <-ctx.Done():
		t.Fatal("the worker did not start")
	}
	queues := make([]string, added)
	for i := range queues {
		queues[i] = fmt.Sprint("added", i)
		if err := w.Controls().AddQueue(ctx, queues[i]); err != nil {
			t.Fatal(err)
		}
	}
	b.mu.Lock()
	consumes := b.consumes
	b.mu.Unlock()
	if consumes != 1 {
		t.Fatalf("%d consumers started for %d queues", consumes, added+1)
	}
	publish := func(queue string, n int) {
		t.Helper()
		for i := range n {
			msg := &protocol.RawMessage{
				Headers:     map[string]any{"id": fmt.Sprintf("%s-%d-%s", queue, i, testenv.Suffix()), "task": "addq.wait", "lang": "py"},
				ContentType: "application/json", ContentEncoding: "utf-8", DeliveryMode: 2,
				Body: []byte(fmt.Sprintf(`[[%q], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`, queue))}
			if err := e.broker.Publish(ctx, "", queue, msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, q := range queues {
		publish(q, perQueue)
	}

	// The tasks wait: the worker holds what the window lets it take.
	deadline := time.Now().Add(30 * time.Second)
	for {
		b.mu.Lock()
		held := b.held
		b.mu.Unlock()
		if held >= window {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker holds %d messages, want its window of %d", held, window)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The broker's count, when rabbitmqctl answers (a busy node lists
	// nothing now and then): one channel, the window taken.
	for tries := 0; tries < 5; tries++ {
		cons, un := consumerChannels(t, connName)
		if len(cons) == 0 {
			continue
		}
		if len(cons) != 1 || cons[0] != added+1 || un[0] > window {
			t.Fatalf("consumers per channel %v, unacknowledged %v; want one channel with %d, at most %d", cons, un, added+1, window)
		}
		t.Logf("rabbitmqctl: one channel, %d consumers, %d unacknowledged", cons[0], un[0])
		break
	}
	b.mu.Lock()
	peak := b.peak
	b.mu.Unlock()
	if peak > window {
		t.Fatalf("the worker held %d messages at once with a window of %d (%d queues)", peak, window, added+1)
	}
	t.Logf("%d added queues of %d waiting tasks, window %d: at most %d held", added, perQueue, window, peak)
	close(release)
	released = true
	got := map[string]int{}
	for i := range added * perQueue {
		select {
		case q := <-ran:
			got[q]++
		case <-ctx.Done():
			t.Fatalf("%d of %d tasks ran: %v", i, added*perQueue, got)
		}
	}
	for _, q := range queues {
		if got[q] != perQueue {
			t.Errorf("queue %s: %d tasks ran, want %d", q, got[q], perQueue)
		}
	}

	// A forced close: the added queues are consumed again.
	if closeConnection(t, connName) == 0 {
		t.Fatalf("no connection named %s to close", connName)
	}
	deadline = time.Now().Add(30 * time.Second)
	for wb.Reconnects() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the worker did not reconnect")
		}
		time.Sleep(50 * time.Millisecond)
	}
	publish(queues[3], 1)
	select {
	case q := <-ran:
		if q != queues[3] {
			t.Fatalf("task of %s ran, want %s", q, queues[3])
		}
	case <-ctx.Done():
		t.Fatal("the added queue's task did not run after the reconnect")
	}

	// cancel_consumer: the queue keeps its messages.
	if err := w.Controls().CancelQueue(ctx, queues[0]); err != nil {
		t.Fatal(err)
	}
	publish(queues[0], 2)
	publish(queues[1], 1)
	select {
	case q := <-ran:
		if q != queues[1] {
			t.Fatalf("task of %s ran after its queue was cancelled", q)
		}
	case <-ctx.Done():
		t.Fatal("the added queue's task did not run")
	}
	if n, err := wb.QueueLength(ctx, queues[0]); err != nil || n != 2 {
		t.Fatalf("cancelled queue %s: %d ready (%v), want 2", queues[0], n, err)
	}
	if n, err := wb.QueueConsumers(ctx, queues[0]); err != nil || n != 0 {
		t.Fatalf("cancelled queue %s: %d consumers (%v), want 0", queues[0], n, err)
	}

	// A quorum queue refuses the channel's global QoS: it gets a consumer
	// (and a channel) of its own, and its tasks run.
	ch, err := e.conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare("addq-quorum", true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Controls().AddQueue(ctx, "addq-quorum"); err != nil {
		t.Fatal(err)
	}
	publish("addq-quorum", 1)
	select {
	case q := <-ran:
		if q != "addq-quorum" {
			t.Fatalf("task of %s ran, want addq-quorum", q)
		}
	case <-ctx.Done():
		t.Fatal("the quorum queue's task did not run")
	}
	b.mu.Lock()
	consumes = b.consumes
	b.mu.Unlock()
	if consumes != 2 {
		t.Errorf("%d consumers started, want the quorum queue on one of its own", consumes)
	}
	if r := wb.Reconnects(); r != 1 {
		t.Errorf("%d reconnects, want the forced one only", r)
	}
}

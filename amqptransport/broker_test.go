package amqptransport

import (
	"context"
	"errors"
	"os/exec"
	"runtime"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/transport"
)

// kombuDeclare declares a queue the way a Celery worker declares its
// default task queue (kombu Queue + direct durable Exchange of the same
// name).
func kombuDeclare(t *testing.T, name string) error {
	t.Helper()
	script := `
import sys
from kombu import Connection, Exchange, Queue
name, url = sys.argv[1], sys.argv[2]
with Connection(url) as conn:
    ch = conn.channel()
    Queue(name, Exchange(name, type='direct'), routing_key=name)(ch).declare()
`
	out, err := exec.Command(testenv.Python(), "-c", script, name, "amqp://guest:guest@127.0.0.1:5672//").CombinedOutput()
	if err != nil {
		return errors.New(string(out))
	}
	return nil
}

func TestDeclareCompatiblePythonFirst(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	if err := kombuDeclare(t, q.Name); err != nil {
		t.Fatalf("kombu declare: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatalf("Declare after kombu: %v", err)
	}
}

func TestDeclareCompatibleGoFirst(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatal(err)
	}
	if err := kombuDeclare(t, q.Name); err != nil {
		t.Fatalf("kombu declare after Go: %v", err)
	}
	// The declaration matches what a stock worker shows in list_queues.
	out, err := exec.Command("rabbitmqctl", "-q", "list_queues", "name", "durable", "auto_delete", "exclusive", "arguments").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !regexpMatch(`(?m)^`+regexpQuote(q.Name)+`\ttrue\tfalse\tfalse\t\[\]$`, string(out)) {
		t.Fatalf("queue flags differ from Celery's:\n%s", out)
	}
}

func TestDeclareMismatchIsAnErrorNotAFatalOne(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatal(err)
	}
	bad := q
	bad.Durable = false
	err := f.b.Declare(ctx, bad)
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed {
		t.Fatalf("err = %v, want PRECONDITION_FAILED", err)
	}
	// The broker connection survives.
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatalf("Declare after a failed one: %v", err)
	}
}

func TestDeclareReplyQueueWithArguments(t *testing.T) {
	f := newFixture(t)
	name := uniqueName(t, "reply")
	f.cleanupQueue(name, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q := Queue{Name: name, AutoDelete: true, Arguments: map[string]any{"x-expires": 86400000}}
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatal(err)
	}
	// What a Celery client declares for its rpc reply queue.
	script := `
import sys
from kombu import Connection, Queue
with Connection('amqp://guest:guest@127.0.0.1:5672//') as conn:
    Queue(sys.argv[1], durable=False, auto_delete=True, expires=86400.0)(conn.channel()).declare()
`
	if out, err := exec.Command(testenv.Python(), "-c", script, name).CombinedOutput(); err != nil {
		t.Fatalf("kombu declare: %v\n%s", err, out)
	}
}

func TestDialFailsClearlyWhenCtxEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, Config{URL: "amqp://guest:guest@127.0.0.1:1//", ReconnectMin: 10 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if _, err := Dial(context.Background(), Config{URL: "http://x"}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("bad scheme: %v", err)
	}
}

func TestConsumeAckReject(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{q}, Prefetch: 10, GlobalQoS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f.publishN(ctx, q.Name, 3)
	got := map[int64]*Delivery{}
	for i := 0; i < 3; i++ {
		d := recv(t, c, 10*time.Second)
		got[headerInt(t, d, "n")] = d
		if d.Queue != q.Name || d.Raw().RoutingKey != q.Name || d.Raw().Redelivered {
			t.Fatalf("delivery info: %+v", d)
		}
	}
	if err := got[0].Ack(); err != nil {
		t.Fatal(err)
	}
	if err := got[0].Ack(); !errors.Is(err, ErrAlreadySettled) {
		t.Fatalf("double ack: %v", err)
	}
	if err := got[1].Reject(false); err != nil {
		t.Fatal(err)
	}
	if err := got[2].Reject(true); err != nil {
		t.Fatal(err)
	}
	d := recv(t, c, 10*time.Second)
	if headerInt(t, d, "n") != 2 || !d.Raw().Redelivered {
		t.Fatalf("requeued delivery: n=%v redelivered=%v", d.Raw().Headers["n"], d.Raw().Redelivered)
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "queue drained", func() bool {
		r, u := f.counts(q.Name)
		return r == 0 && u == 0
	})
}

func TestPrefetchAndSetPrefetch(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatal(err)
	}
	f.publishN(ctx, q.Name, 5)
	c, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{q}, Prefetch: 2, GlobalQoS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var held []*Delivery
	held = append(held, recv(t, c, 10*time.Second), recv(t, c, 10*time.Second))
	// The broker holds the rest back: 3 ready, 2 unacked.
	eventually(t, 10*time.Second, "3 ready / 2 unacked", func() bool {
		r, u := f.counts(q.Name)
		return r == 3 && u == 2
	})
	select {
	case d := <-c.Deliveries():
		t.Fatalf("delivery beyond the prefetch: %v", d.Raw().Headers)
	default:
	}
	// Raising the prefetch (as an ETA message does) lets one more in.
	if err := c.AddPrefetch(1); err != nil {
		t.Fatal(err)
	}
	if c.Prefetch() != 3 {
		t.Fatalf("Prefetch() = %d", c.Prefetch())
	}
	held = append(held, recv(t, c, 10*time.Second))
	eventually(t, 10*time.Second, "2 ready / 3 unacked", func() bool {
		r, u := f.counts(q.Name)
		return r == 2 && u == 3
	})
	if err := c.SetPrefetch(-1); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("SetPrefetch(-1) = %v", err)
	}
	for _, d := range held {
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		if err := recv(t, c, 10*time.Second).Ack(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPerConsumerPrefetchChangeRestartsConsumers(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatal(err)
	}
	f.publishN(ctx, q.Name, 5)
	c, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{q}, Prefetch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := recv(t, c, 10*time.Second)
	if err := c.SetPrefetch(3); err != nil {
		t.Fatal(err)
	}
	// The consumers restart on the same channel with room for the two
	// messages the held one leaves: nothing is requeued.
	seen := map[int64]bool{headerInt(t, d, "n"): true}
	var second []*Delivery
	for len(second) < 2 {
		d2 := recv(t, c, 10*time.Second)
		if d2.Epoch() != d.Epoch() {
			t.Fatalf("delivery on channel %d, want the first channel %d", d2.Epoch(), d.Epoch())
		}
		seen[headerInt(t, d2, "n")] = true
		second = append(second, d2)
	}
	// Settling the first round's delivery tops the window up again.
	if err := d.Ack(); err != nil {
		t.Fatalf("ack of the delivery held across the restart: %v", err)
	}
	third := recv(t, c, 10*time.Second)
	seen[headerInt(t, third, "n")] = true
	for _, d2 := range append(second, third) {
		if err := d2.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	for len(seen) < 5 {
		d2 := recv(t, c, 10*time.Second)
		seen[headerInt(t, d2, "n")] = true
		if err := d2.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if d.Epoch() != third.Epoch() {
		t.Fatalf("the channel was reopened (%d -> %d)", d.Epoch(), third.Epoch())
	}
}

// Close while per-consumer prefetch changes are restarting the consumers:
// the restarts' basic.qos/consume/cancel and the close's channel.close
// must not be in flight together on the channel (a reply taken by the
// wrong caller left Close waiting forever; a basic.consume after
// channel.close made the broker close the connection).
func TestCloseDuringConsumerRestarts(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatal(err)
	}
	f.publishN(ctx, q.Name, 3)
	s, err := f.b.main.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		c, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{q}, Prefetch: 1})
		if err != nil {
			t.Fatal(err)
		}
		d := recv(t, c, 10*time.Second)
		// Every change moves the window by more than a quarter: each one
		// restarts the consumers.
		stop := make(chan struct{})
		flipped := make(chan struct{})
		go func() {
			defer close(flipped)
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				_ = c.SetPrefetch(1 + n%2*40)
				runtime.Gosched()
			}
		}()
		// Let some restarts run, then close in the middle of them.
		for j := 0; j < i%5; j++ {
			runtime.Gosched()
		}
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			_ = c.Close()
		}()
		select {
		case <-closed:
		case <-time.After(60 * time.Second):
			close(stop)
			t.Fatalf("iteration %d: Close still waiting after 60s", i)
		}
		close(stop)
		<-flipped
		if !errors.Is(d.Ack(), ErrStaleDelivery) {
			t.Fatalf("iteration %d: ack after Close was not stale", i)
		}
		if s.isClosed() {
			t.Fatalf("iteration %d: the connection was closed: %v", i, s.closeErr())
		}
	}
}

func TestStaleDeliveryAfterReconnect(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatal(err)
	}
	const total = 10
	f.publishN(ctx, q.Name, total)
	c, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{q}, Prefetch: 4, GlobalQoS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var before []*Delivery
	for i := 0; i < 4; i++ {
		before = append(before, recv(t, c, 10*time.Second))
	}
	// Process one before the failure.
	if err := before[0].Ack(); err != nil {
		t.Fatal(err)
	}
	epoch := before[1].Epoch()

	f.killConnections(false)

	// The consumer comes back by itself on a new channel.
	var after *Delivery
	eventually(t, 30*time.Second, "delivery on a new channel", func() bool {
		select {
		case dv := <-c.Deliveries():
			d := dv.(*Delivery)
			if d.Epoch() != epoch {
				after = d
				return true
			}
			// A delivery forwarded from the old channel just before it
			// died: it must be stale.
			if err := d.Ack(); !errors.Is(err, ErrStaleDelivery) {
				t.Fatalf("ack of a delivery of the dead channel: %v", err)
			}
		default:
		}
		return false
	})
	for _, d := range before[1:] {
		if !d.Stale() {
			t.Fatal("pre-failure delivery not marked stale")
		}
		if err := d.Ack(); !errors.Is(err, ErrStaleDelivery) {
			t.Fatalf("ack of pre-failure delivery %v: %v, want ErrStaleDelivery", d.Raw().Headers["n"], err)
		}
		if err := d.Reject(false); !errors.Is(err, ErrStaleDelivery) {
			t.Fatalf("reject of pre-failure delivery: %v", err)
		}
	}
	// Nothing was settled by the stale acks: every unprocessed message is
	// still held (9 = 10 published - 1 acked before the failure).
	eventually(t, 10*time.Second, "9 messages still in the queue", func() bool {
		r, u := f.counts(q.Name)
		return r+u == total-1
	})
	// And they are all delivered again, exactly the unprocessed ones.
	seen := map[int64]bool{}
	for d := after; ; d = recv(t, c, 10*time.Second) {
		n := headerInt(t, d, "n")
		if n == headerInt(t, before[0], "n") {
			t.Fatalf("message %d was acked before the failure and came back", n)
		}
		seen[n] = true
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
		if len(seen) == total-1 {
			break
		}
	}
	eventually(t, 10*time.Second, "queue drained", func() bool {
		r, u := f.counts(q.Name)
		return r == 0 && u == 0
	})
}

func TestChannelErrorIsRecovered(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{q}, Prefetch: 5, GlobalQoS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f.publishN(ctx, q.Name, 2)
	d := recv(t, c, 10*time.Second)
	// Provoke a channel error the way a consumer_timeout does
	// (PRECONDITION_FAILED): acknowledge an unknown delivery tag.
	if err := d.gen.ch.Ack(d.DeliveryTag+1000, false); err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	eventually(t, 20*time.Second, "both messages on the new channel", func() bool {
		select {
		case dv := <-c.Deliveries():
			d2 := dv.(*Delivery)
			if d2.Epoch() == d.Epoch() {
				return false
			}
			seen[headerInt(t, d2, "n")] = true
			if err := d2.Ack(); err != nil {
				t.Fatal(err)
			}
		default:
		}
		return len(seen) == 2
	})
	if err := d.Ack(); !errors.Is(err, ErrStaleDelivery) {
		t.Fatalf("ack on the failed channel: %v", err)
	}
}

func TestCancelKeepsDeliveriesAckable(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatal(err)
	}
	f.publishN(ctx, q.Name, 5)
	c, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{q}, Prefetch: 3, GlobalQoS: true})
	if err != nil {
		t.Fatal(err)
	}
	first := recv(t, c, 10*time.Second)
	// The broker has sent up to 3; wait until they are all out.
	eventually(t, 10*time.Second, "3 unacked", func() bool { _, u := f.counts(q.Name); return u == 3 })
	if err := c.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	// Deliveries received before the cancel are still handed over, then
	// the channel closes.
	var rest []*Delivery
	for d := range c.Deliveries() {
		rest = append(rest, d.(*Delivery))
	}
	if len(rest) != 2 {
		t.Fatalf("%d deliveries after Cancel, want 2", len(rest))
	}
	for _, d := range append(rest, first) {
		if err := d.Ack(); err != nil {
			t.Fatalf("ack after Cancel: %v", err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := f.ready(q.Name); got != 2 {
		t.Fatalf("ready = %d, want 2", got)
	}
}

func TestCloseRequeuesUnacked(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatal(err)
	}
	f.publishN(ctx, q.Name, 3)
	c, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{q}, Prefetch: 10, GlobalQoS: true})
	if err != nil {
		t.Fatal(err)
	}
	d := recv(t, c, 10*time.Second)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-c.Deliveries(); ok {
		// Possibly one buffered delivery; the channel must then be closed.
		if _, ok := <-c.Deliveries(); ok {
			t.Fatal("deliveries channel still open after Close")
		}
	}
	if err := d.Ack(); !errors.Is(err, ErrStaleDelivery) {
		t.Fatalf("ack after Close: %v", err)
	}
	eventually(t, 10*time.Second, "3 ready again", func() bool { return f.ready(q.Name) == 3 })
}

func TestConsumeErrors(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.b.NewConsumer(ctx, ConsumerConfig{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("no queues: %v", err)
	}
	missing := Queue{Name: uniqueName(t, "missing")}
	_, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{missing}, NoDeclare: true})
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.NotFound {
		t.Fatalf("missing queue: %v", err)
	}
}

func TestBrokerCloseClosesConsumers(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{q}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-c.Deliveries(); ok {
		t.Fatal("deliveries open after Broker.Close")
	}
	if err := f.b.Publish(ctx, "", q.Name, nil); err == nil {
		t.Fatal("publish after close")
	}
	if _, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{q}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("consume after close: %v", err)
	}
}

func TestConsumeNoAckReplyQueue(t *testing.T) {
	f := newFixture(t)
	name := uniqueName(t, "reply")
	f.cleanupQueue(name, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	q := Queue{Name: name, AutoDelete: true, Arguments: map[string]any{"x-expires": 60000}}
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatal(err)
	}
	c, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{q}, NoDeclare: true, NoAck: true})
	if err != nil {
		t.Fatal(err)
	}
	f.publishN(ctx, name, 2)
	for i := 0; i < 2; i++ {
		d := recv(t, c, 10*time.Second)
		if err := d.Ack(); !errors.Is(err, ErrNoAck) {
			t.Fatalf("Ack on a no-ack delivery: %v", err)
		}
	}
	_, u := f.counts(name)
	if u != 0 {
		t.Fatalf("%d unacked on a no-ack consumer", u)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// A parked delivery settles as the delivery it was, once, and unparks with
// the message it is given; the batched acknowledgements and the consumer's
// count of unsettled deliveries see it as one delivery.
func TestParkedDeliverySettles(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{q}, Prefetch: 10, GlobalQoS: true, BatchAcks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f.publishN(ctx, q.Name, 3)
	got := map[int64]*Delivery{}
	for i := 0; i < 3; i++ {
		d := recv(t, c, 10*time.Second)
		got[headerInt(t, d, "n")] = d
	}
	var _ transport.Parker = got[0]
	// 0: parked, acknowledged.
	p0 := got[0].Park()
	if qo, ok := p0.(transport.QueueOf); !ok || qo.ConsumedFrom() != q.Name {
		t.Fatalf("a parked delivery does not tell its queue %q", q.Name)
	}
	if err := p0.Ack(); err != nil {
		t.Fatal(err)
	}
	if err := p0.Ack(); !errors.Is(err, ErrAlreadySettled) {
		t.Fatalf("double ack: %v", err)
	}
	// 1: parked, requeued.
	if err := got[1].Park().Reject(true); err != nil {
		t.Fatal(err)
	}
	// 2: parked, unparked with its message, acknowledged.
	raw := got[2].Message
	u := got[2].Park().Unpark(&raw)
	if u.Raw().Headers["n"] != int64(2) || u.(*Delivery).Queue != q.Name {
		t.Fatalf("unparked %+v", u)
	}
	if err := u.Ack(); err != nil {
		t.Fatal(err)
	}
	d := recv(t, c, 10*time.Second)
	if headerInt(t, d, "n") != 1 || !d.Raw().Redelivered {
		t.Fatalf("requeued delivery: n=%v redelivered=%v", d.Raw().Headers["n"], d.Raw().Redelivered)
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "queue drained", func() bool {
		r, u := f.counts(q.Name)
		return r == 0 && u == 0
	})
}

package amqptransport

import (
	"context"
	"errors"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
)

// vhostURL creates a virtual host for the test, open to guest, deleted
// (with everything in it) when the test ends, and returns its amqp URL.
func vhostURL(t *testing.T) (vhost, amqpURL string) {
	t.Helper()
	requireBroker(t)
	vhost = "gwtest-" + testenv.Suffix()
	for _, args := range [][]string{{"add_vhost", vhost}, {"set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"}} {
		if out, err := exec.Command("rabbitmqctl", append([]string{"-q"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("rabbitmqctl %v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command("rabbitmqctl", "-q", "delete_vhost", vhost).CombinedOutput(); err != nil {
			t.Errorf("rabbitmqctl delete_vhost: %v\n%s", err, out)
		}
	})
	u, err := url.Parse(testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + vhost
	return vhost, u.String()
}

// queueType returns the type rabbitmqctl lists for a queue.
func queueType(t *testing.T, vhost, name string) string {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "type").CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl list_queues: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if fs := strings.Fields(line); len(fs) == 2 && fs[0] == name {
			return fs[1]
		}
	}
	t.Fatalf("queue %s not listed:\n%s", name, out)
	return ""
}

// kombuDeclareQuorum declares a task queue the way a Celery app with
// task_queues = [Queue(name, Exchange(name), routing_key=name,
// queue_arguments={'x-queue-type': 'quorum'})] does.
func kombuDeclareQuorum(t *testing.T, brokerURL, name string) {
	t.Helper()
	script := `
import sys
from kombu import Connection, Exchange, Queue
name, url = sys.argv[1], sys.argv[2]
with Connection(url) as conn:
    ch = conn.channel()
    Queue(name, Exchange(name, type='direct'), routing_key=name,
          queue_arguments={'x-queue-type': 'quorum'})(ch).declare()
`
	out, err := exec.Command(testenv.Python(), "-c", script, name, brokerURL).CombinedOutput()
	if err != nil {
		t.Fatalf("kombu declare: %v\n%s", err, out)
	}
}

func dialURL(t *testing.T, url string, mod ...func(*Config)) *Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := Config{URL: url, Logger: zaptest.NewLogger(t), ConnectionName: uniqueName(t, "conn"),
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond}
	for _, f := range mod {
		f(&cfg)
	}
	b, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Broker.Close: %v", err)
		}
	})
	return b
}

func TestTypeFromMismatch(t *testing.T) {
	for reason, want := range map[string]string{
		"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received none but current is the value 'quorum' of type 'longstr'":                  "quorum",
		"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received the value 'quorum' of type 'longstr' but current is none":                  "classic",
		"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received the value 'quorum' of type 'longstr' but current is the value 'stream' of": "stream",
		"PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue 'q' in vhost '/': received none but current is the value '10' of type 'signedint'":                  "",
	} {
		if got := typeFromMismatch(reason); got != want {
			t.Errorf("typeFromMismatch(%q) = %q, want %q", reason, got, want)
		}
	}
}

func TestDefaultQueueTypeIsValidated(t *testing.T) {
	_, err := Dial(context.Background(), Config{URL: testenv.AMQPURL(), DefaultQueueType: "mirrored"})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Dial with queue type mirrored: %v, want ErrInvalidConfig", err)
	}
}

// A quorum queue declared by Python is consumed as it is: no
// PRECONDITION_FAILED on the redeclaration, no 540 NOT_IMPLEMENTED on
// global QoS, and raising the prefetch while a message is held neither
// requeues it nor reopens the channel.
func TestConsumePythonQuorumQueue(t *testing.T) {
	vhost, u := vhostURL(t)
	b := dialURL(t, u)
	name := "tasks.quorum"
	kombuDeclareQuorum(t, u, name)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < 6; i++ {
		msg := rawJSON(i)
		if err := b.Publish(ctx, name, name, msg); err != nil {
			t.Fatal(err)
		}
	}
	// gworker's own declaration is classic (no x-queue-type), as kombu's.
	c, err := b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{TaskQueue(name)}, Prefetch: 2, GlobalQoS: true, BatchAcks: true})
	if err != nil {
		t.Fatalf("Consume of a quorum queue declared by Python: %v", err)
	}
	defer c.Close()
	d1 := recv(t, c, 10*time.Second)
	d2 := recv(t, c, 10*time.Second)
	// Hold both (as ETA messages) and widen the window by two.
	if err := c.AddPrefetch(2); err != nil {
		t.Fatal(err)
	}
	d3 := recv(t, c, 10*time.Second)
	d4 := recv(t, c, 10*time.Second)
	for _, d := range []*Delivery{d2, d3, d4, d1} {
		if d.Epoch() != d1.Epoch() {
			t.Fatalf("channel reopened: delivery epochs %d and %d", d1.Epoch(), d.Epoch())
		}
		if err := d.Ack(); err != nil {
			t.Fatalf("ack: %v", err)
		}
	}
	// A requeued message comes back with the broker's delivery count.
	d5 := recv(t, c, 10*time.Second)
	if err := d5.Reject(true); err != nil {
		t.Fatal(err)
	}
	var again *Delivery
	for again == nil {
		d := recv(t, c, 10*time.Second)
		if headerInt(t, d, "n") == headerInt(t, d5, "n") {
			again = d
			continue
		}
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if !again.Raw().Redelivered {
		t.Error("requeued message not marked redelivered")
	}
	if n, _ := again.Raw().Headers["x-delivery-count"].(int64); n != 1 {
		t.Errorf("x-delivery-count = %#v, want 1", again.Raw().Headers["x-delivery-count"])
	}
	if err := again.Ack(); err != nil {
		t.Fatal(err)
	}
	if typ := queueType(t, vhost, name); typ != "quorum" {
		t.Fatalf("queue type %s, want quorum", typ)
	}
}

// DefaultQueueType quorum creates quorum task queues; a broker configured
// for classic queues then uses the existing quorum queue instead of failing.
func TestDefaultQueueTypeQuorum(t *testing.T) {
	vhost, u := vhostURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bq := dialURL(t, u, func(c *Config) { c.DefaultQueueType = QueueTypeQuorum })
	if err := bq.DeclareTaskQueue(ctx, "q1"); err != nil {
		t.Fatal(err)
	}
	if typ := queueType(t, vhost, "q1"); typ != "quorum" {
		t.Fatalf("queue type %s, want quorum", typ)
	}
	bc := dialURL(t, u)
	if err := bc.DeclareTaskQueue(ctx, "q1"); err != nil {
		t.Fatalf("classic DeclareTaskQueue of an existing quorum queue: %v", err)
	}
	if err := bc.Publish(ctx, "q1", "q1", rawJSON(1)); err != nil {
		t.Fatal(err)
	}
	c, err := bc.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{bc.TaskQueue("q1")}, Prefetch: 4, GlobalQoS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := recv(t, c, 10*time.Second).Ack(); err != nil {
		t.Fatal(err)
	}
	// And the other way round: a classic queue is used by a quorum broker.
	if err := bc.DeclareTaskQueue(ctx, "q2"); err != nil {
		t.Fatal(err)
	}
	if err := bq.DeclareTaskQueue(ctx, "q2"); err != nil {
		t.Fatalf("quorum DeclareTaskQueue of an existing classic queue: %v", err)
	}
	if typ := queueType(t, vhost, "q2"); typ != "classic" {
		t.Fatalf("queue type %s, want classic", typ)
	}
}

// rawJSON is a small persistent JSON message with an "n" header.
func rawJSON(n int) *protocol.RawMessage {
	return &protocol.RawMessage{
		Headers:      map[string]any{"n": n},
		ContentType:  protocol.ContentTypeJSON,
		Body:         []byte(`{}`),
		DeliveryMode: 2,
	}
}

// A reconnect declares the queues again; what was said of an adopted queue
// and of the switch to per-consumer QoS is not said again.
func TestAdoptedQueueIsLoggedOnceAcrossReconnects(t *testing.T) {
	_, u := vhostURL(t)
	name := "tasks.quorum"
	kombuDeclareQuorum(t, u, name)
	core, logs := observer.New(zap.InfoLevel)
	conn := uniqueName(t, "conn")
	b := dialURL(t, u, func(c *Config) {
		c.Logger = zap.New(core)
		c.ConnectionName = conn
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{TaskQueue(name)}, Prefetch: 2, GlobalQoS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := b.Publish(ctx, name, name, rawJSON(1)); err != nil {
		t.Fatal(err)
	}
	first := recv(t, c, 10*time.Second)
	if err := first.Ack(); err != nil {
		t.Fatal(err)
	}
	killConnectionsNamed(t, func(n string) bool { return n == conn })
	// A delivery on a new channel proves the consumer opened (and declared)
	// again.
	if err := b.Publish(ctx, name, name, rawJSON(2)); err != nil {
		t.Fatal(err)
	}
	second := recv(t, c, 20*time.Second)
	if second.Epoch() == first.Epoch() {
		t.Fatalf("no reconnect: both deliveries on channel epoch %d", first.Epoch())
	}
	if err := second.Ack(); err != nil {
		t.Fatal(err)
	}
	if n := logs.FilterMessageSnippet("queue exists with other arguments").Len(); n != 1 {
		t.Errorf("adoption logged %d times, want once", n)
	}
	if n := logs.FilterMessageSnippet("per-consumer prefetch").Len(); n != 1 {
		t.Errorf("per-consumer QoS logged %d times, want once", n)
	}
}

// exchangeType returns the type rabbitmqctl lists for an exchange.
func exchangeType(t *testing.T, vhost, name string) string {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", "-q", "list_exchanges", "-p", vhost, "name", "type").CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl list_exchanges: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if fs := strings.Fields(line); len(fs) == 2 && fs[0] == name {
			return fs[1]
		}
	}
	t.Fatalf("exchange %s not listed:\n%s", name, out)
	return ""
}

// A Celery 5.5 app whose queue sits on a topic exchange (the layout native
// delayed delivery needs) declared it first: the worker adopts the
// exchange as the broker has it, as it adopts queues, instead of failing
// with PRECONDITION_FAILED, and says so once.
func TestAdoptTopicExchange(t *testing.T) {
	vhost, u := vhostURL(t)
	name := "tasks.topic"
	conn, err := amqp.Dial(u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	// kombu: Queue(name, Exchange(name, type='topic'), routing_key=name).
	if err := ch.ExchangeDeclare(name, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(name, name, name, false, nil); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	b := dialURL(t, u, func(c *Config) { c.Logger = zap.New(core) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := b.DeclareTaskQueue(ctx, name); err != nil {
		t.Fatalf("DeclareTaskQueue on a topic exchange: %v", err)
	}
	c, err := b.Consume(ctx, []string{name}, 4)
	if err != nil {
		t.Fatalf("Consume on a topic exchange: %v", err)
	}
	defer c.Close()
	if err := b.DeclareExchange(ctx, name, "direct", true); err != nil {
		t.Fatalf("DeclareExchange over a topic exchange: %v", err)
	}
	if err := b.Publish(ctx, name, name, rawJSON(1)); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-c.Deliveries():
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("no delivery through the adopted exchange")
	}
	if typ := exchangeType(t, vhost, name); typ != "topic" {
		t.Errorf("exchange is now %s", typ)
	}
	if n := logs.FilterMessageSnippet("exchange exists with another type").Len(); n != 1 {
		t.Errorf("adoption logged %d times, want once", n)
	}
}

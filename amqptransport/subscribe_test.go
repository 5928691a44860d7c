package amqptransport_test

import (
	"context"
	"errors"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/control"
	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/transport"
)

// The node's pidbox queue is declared exactly as kombu declares it, so a
// Python redeclaration (or a Celery worker's) is accepted, and a message
// published to celery.pidbox reaches it.
func TestPidboxQueueAsKombu(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := amqptransport.Dial(ctx, amqptransport.Config{URL: testenv.AMQPURL(), ConnectionName: "gworker-subscribe-test"})
	if err != nil {
		t.Fatalf("RabbitMQ must run at %s: %v", testenv.AMQPURL(), err)
	}
	defer b.Close()
	tr := b
	if err := tr.DeclareExchange(ctx, control.Exchange, "fanout", false); err != nil {
		t.Fatal(err)
	}
	node := "go-" + testenv.Suffix() + "@test"
	sub, err := tr.Subscribe(ctx, control.QueueSpec{Name: control.QueueName(node), Exchange: control.Exchange, ExchangeType: "fanout",
		Expires: control.QueueExpires, MessageTTL: control.QueueTTL})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	c, err := amqp.Dial(testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	// kombu: Queue(durable=False, auto_delete=True, expires=10.0, message_ttl=300.0).
	if _, err := ch.QueueDeclare(control.QueueName(node), false, true, false, false,
		amqp.Table{"x-expires": int32(10000), "x-message-ttl": int32(300000)}); err != nil {
		t.Fatalf("kombu's declaration of the pidbox queue is refused: %v", err)
	}
	if err := tr.Publish(ctx, control.Exchange, "", &protocol.RawMessage{ContentType: "application/json", Body: []byte(`{"method": "ping"}`)}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-sub.Messages():
		if string(m.Body) != `{"method": "ping"}` {
			t.Fatalf("body %s", m.Body)
		}
	case <-ctx.Done():
		t.Fatal("no message through celery.pidbox")
	}
}

// A control message over transport.MaxSubscriptionMessage is dropped: the
// subscription buffers messages for a reader that may be slow, and anyone
// on the broker can send RabbitMQ's maximum (128 MiB) to a pidbox.
func TestSubscriptionDropsOversizedMessages(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := amqptransport.Dial(ctx, amqptransport.Config{URL: testenv.AMQPURL(), ConnectionName: "gworker-subscribe-test"})
	if err != nil {
		t.Fatalf("RabbitMQ must run at %s: %v", testenv.AMQPURL(), err)
	}
	defer b.Close()
	name := "gworker-reply-" + testenv.Suffix()
	sub, err := b.Subscribe(ctx, transport.QueueSpec{Name: name, Exchange: name, ExchangeType: "direct", RoutingKey: name,
		Expires: control.QueueExpires})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	big := &protocol.RawMessage{ContentType: "application/json", Body: make([]byte, transport.MaxSubscriptionMessage+1)}
	small := &protocol.RawMessage{ContentType: "application/json", Body: []byte(`{"ok": 1}`)}
	for _, m := range []*protocol.RawMessage{big, small} {
		if err := b.Publish(ctx, name, name, m); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case m := <-sub.Messages():
		if string(m.Body) != `{"ok": 1}` {
			t.Fatalf("got a message of %d bytes first", len(m.Body))
		}
	case <-ctx.Done():
		t.Fatal("the small message did not arrive")
	}
}

// Exclusive and durable pidbox queues are declared as kombu 5.6 declares
// them with control_queue_exclusive and control_queue_durable (kombu's
// redeclaration is accepted); an exclusive one is refused to another
// connection, and both at once is refused before anything is declared.
func TestPidboxQueueExclusiveAndDurable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := amqptransport.Dial(ctx, amqptransport.Config{URL: testenv.AMQPURL(), ConnectionName: "gworker-subscribe-test"})
	if err != nil {
		t.Fatalf("RabbitMQ must run at %s: %v", testenv.AMQPURL(), err)
	}
	defer b.Close()
	if err := b.DeclareExchange(ctx, control.Exchange, "fanout", false); err != nil {
		t.Fatal(err)
	}
	c, err := amqp.Dial(testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	args := amqp.Table{"x-expires": int32(10000), "x-message-ttl": int32(300000)}
	for _, o := range []control.QueueOptions{{Exclusive: true}, {Durable: true}} {
		name := control.QueueName("go-" + testenv.Suffix() + "@test")
		spec := control.QueueSpec{Name: name, Exchange: control.Exchange, ExchangeType: "fanout",
			Expires: control.QueueExpires, MessageTTL: control.QueueTTL, Durable: o.Durable, Exclusive: o.Exclusive}
		sub, err := b.Subscribe(ctx, spec)
		if err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		ch, err := c.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if o.Exclusive {
			// Another connection (kombu's, say) cannot even redeclare it.
			_, err := ch.QueueDeclare(name, false, true, true, false, args)
			if ae, ok := err.(*amqp.Error); !ok || ae.Code != amqp.ResourceLocked {
				t.Errorf("exclusive queue declared from another connection: %v, want RESOURCE_LOCKED", err)
			}
		} else {
			// kombu: Queue(durable=True, auto_delete=False, exclusive=False, ...).
			if _, err := ch.QueueDeclare(name, true, false, false, false, args); err != nil {
				t.Errorf("kombu's declaration of the durable pidbox queue is refused: %v", err)
			}
			_, _ = ch.QueueDelete(name, false, false, false)
		}
		_ = ch.Close()
		sub.Close()
	}
	_, err = b.Subscribe(ctx, control.QueueSpec{Name: "never", Exchange: control.Exchange, ExchangeType: "fanout", Durable: true, Exclusive: true})
	if !errors.Is(err, amqptransport.ErrInvalidConfig) {
		t.Errorf("durable and exclusive: %v, want ErrInvalidConfig", err)
	}
}

// QueueConsumers tells how many consumers a queue has, as kombu's pidbox
// reads it from the declaration to warn about a node name in use twice.
func TestQueueConsumers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := amqptransport.Dial(ctx, amqptransport.Config{URL: testenv.AMQPURL(), ConnectionName: "gworker-subscribe-test"})
	if err != nil {
		t.Fatalf("RabbitMQ must run at %s: %v", testenv.AMQPURL(), err)
	}
	defer b.Close()
	name := "gworker-consumers-" + testenv.Suffix()
	if n, err := b.QueueConsumers(ctx, name); err != nil || n != 0 {
		t.Fatalf("missing queue: %d %v", n, err)
	}
	sub, err := b.Subscribe(ctx, transport.QueueSpec{Name: name, Exchange: name, ExchangeType: "direct", RoutingKey: name, Expires: control.QueueExpires})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if n, err := b.QueueConsumers(ctx, name); err != nil || n != 1 {
		t.Fatalf("subscribed queue: %d %v", n, err)
	}
}

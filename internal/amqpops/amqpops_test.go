package amqpops_test

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/control"
	"github.com/gworker/gworker/internal/amqpops"
	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The node's pidbox queue is declared exactly as kombu declares it, so a
// Python redeclaration (or a Celery worker's) is accepted, and a message
// published to celery.pidbox reaches it.
func TestPidboxQueueAsKombu(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := amqptransport.Dial(ctx, amqptransport.Config{URL: testenv.AMQPURL(), ConnectionName: "gworker-amqpops-test"})
	if err != nil {
		t.Fatalf("RabbitMQ must run at %s: %v", testenv.AMQPURL(), err)
	}
	defer b.Close()
	tr := amqpops.New(b, nil)
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

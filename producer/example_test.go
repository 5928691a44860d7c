package producer_test

import (
	"context"
	"fmt"
	"time"

	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
)

// stdoutPublisher prints where each message would go instead of
// publishing it. A real program passes an amqptransport.Broker.
type stdoutPublisher struct{}

func (stdoutPublisher) Publish(_ context.Context, exchange, routingKey string, msg *protocol.RawMessage) error {
	fmt.Printf("publish to %q/%q: %s\n", exchange, routingKey, msg.ContentType)
	return nil
}

func ExampleProducer_SendTask() {
	p := producer.New(stdoutPublisher{}, producer.Options{})
	res, err := p.SendTask(context.Background(), "tasks.add", []any{2, 2}, nil,
		producer.Countdown(10*time.Second),
		producer.Queue("math"),
	)
	if err != nil {
		fmt.Println("send:", err)
		return
	}
	fmt.Println("sent", res.ID())
}

func ExampleProducer_Build() {
	p := producer.New(stdoutPublisher{}, producer.Options{ReplyTo: "client-1", Origin: "gen1@example"})
	msg, err := p.Build("tasks.add", []any{2}, map[string]any{"y": 3},
		producer.TaskID("6f1c4c52-3b7a-4f0e-9a57-0d3c2a9b1e10"),
		producer.Priority(5),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(msg.Task, msg.ArgsRepr, msg.KwargsRepr)
	fmt.Println("root:", msg.RootID == msg.ID, "reply_to:", msg.ReplyTo, "priority:", msg.Priority)
	fmt.Printf("route: %q %q\n", msg.Route.Exchange, msg.Route.RoutingKey)
	// Output:
	// tasks.add (2,) {'y': 3}
	// root: true reply_to: client-1 priority: 5
	// route: "" "celery"
}

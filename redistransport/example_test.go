package redistransport_test

import (
	"context"
	"fmt"
	"time"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/redistransport"
)

// Publish a task message and consume it as a Celery worker would.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := "example-" + testenv.Suffix() + ":"
	b, err := redistransport.Dial(ctx, redistransport.Config{
		URL:              testenv.RedisURL(),
		TransportOptions: map[string]string{"visibility_timeout": "3600", "global_keyprefix": prefix},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()
	defer b.Client().Del(context.Background(), prefix+"celery", prefix+"_kombu.binding.celery")

	c, err := b.NewConsumer(ctx, redistransport.ConsumerConfig{Queues: []string{"celery"}, Prefetch: 4})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	msg := &protocol.RawMessage{
		Headers:     map[string]any{"id": "1", "task": "tasks.add"},
		ContentType: "application/json", ContentEncoding: "utf-8",
		Body: []byte(`[[2, 2], {}, {}]`),
	}
	if err := b.Publish(ctx, "celery", "celery", msg); err != nil {
		fmt.Println(err)
		return
	}
	d := (<-c.Deliveries()).(*redistransport.Delivery)
	fmt.Println(d.Queue, d.Raw().Headers["task"], string(d.Raw().Body))
	fmt.Println(d.Ack())
	// Output:
	// celery tasks.add [[2, 2], {}, {}]
	// <nil>
}

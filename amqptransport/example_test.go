package amqptransport_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/protocol"
)

// A producer and a consumer on one Broker: declare a Celery task queue,
// publish with confirms, consume, acknowledge.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	b, err := amqptransport.Dial(ctx, amqptransport.Config{
		URL:            "amqp://guest:guest@127.0.0.1:5672//",
		ConnectionName: "example",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	q := amqptransport.TaskQueue("example." + hex.EncodeToString(suffix[:]))
	if err := b.Declare(ctx, q); err != nil {
		log.Fatal(err)
	}
	defer func() {
		_, _ = b.DeleteQueue(context.Background(), q.Name)
	}()

	msg := &protocol.RawMessage{
		Headers:      map[string]any{"task": "tasks.add", "id": "0f3c", "retries": 0},
		ContentType:  protocol.ContentTypeJSON,
		Body:         []byte(`[[2, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`),
		DeliveryMode: 2,
	}
	// Tasks go to the default exchange with the queue name as routing key,
	// as Celery publishes them.
	if err := b.Publish(ctx, "", q.Name, msg); err != nil {
		log.Fatal(err)
	}

	c, err := b.NewConsumer(ctx, amqptransport.ConsumerConfig{
		Queues:    []amqptransport.Queue{q},
		Prefetch:  8, // worker_prefetch_multiplier × concurrency
		GlobalQoS: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	d := <-c.Deliveries()
	fmt.Println(d.Raw().Headers["task"], d.Raw().Headers["retries"], string(d.Raw().Body[:8]))
	if err := d.Ack(); err != nil {
		log.Fatal(err)
	}
	// Output: tasks.add 0 [[2, 2],
}

// After a reconnection, deliveries of the old channel cannot be
// acknowledged: the broker has already requeued them.
func ExampleDelivery_Ack() {
	var d amqptransport.Delivery // a delivery whose channel is gone
	err := d.Ack()
	fmt.Println(errors.Is(err, amqptransport.ErrStaleDelivery))
	// Output: true
}

func ExampleRedactURL() {
	fmt.Println(amqptransport.RedactURL("amqp://guest:guest@localhost:5672//"))
	// Output: amqp://guest:**@localhost:5672//
}

func ExampleHeadersToAMQP() {
	t, err := amqptransport.HeadersToAMQP(map[string]any{
		"retries": 3,              // int32, type 'I'
		"big":     int64(1) << 40, // int64, type 'l'
		"neg":     -(int64(1) << 40),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%T %T %T\n", t["retries"], t["big"], t["neg"])
	// Output: int32 int64 float64
}

func ExampleConsumer_Cancel() {
	ctx := context.Background()
	b, err := amqptransport.Dial(ctx, amqptransport.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	c, err := b.NewConsumer(ctx, amqptransport.ConsumerConfig{
		Queues: []amqptransport.Queue{amqptransport.TaskQueue("celery")}, Prefetch: 8, GlobalQoS: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	// Warm shutdown: stop receiving, finish what was received, then close.
	go func() {
		_ = c.Cancel(ctx)
	}()
	for d := range c.Deliveries() {
		// ... run the task ...
		_ = d.Ack()
	}
	_ = c.Close()
}

// A broker for a cluster: the URLs of the failover list are tried in turn
// (a node that does not answer is skipped), and the task queues it creates
// are quorum queues.
func ExampleBroker_TaskQueue() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := amqptransport.Dial(ctx, amqptransport.Config{
		URL:              "amqp://guest:guest@127.0.0.1:1/;amqp://guest:guest@127.0.0.1:5672/?heartbeat=10",
		DefaultQueueType: amqptransport.QueueTypeQuorum,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	q := b.TaskQueue("reports")
	fmt.Println(q.Arguments["x-queue-type"], q.Durable, b.ConnectedURL())
	// Output: quorum true amqp://guest:**@127.0.0.1:5672/?heartbeat=10
}

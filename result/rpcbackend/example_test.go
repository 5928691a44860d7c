package rpcbackend_test

import (
	"context"
	"fmt"
	"time"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/rpcbackend"
)

// A client using the rpc:// backend: the producer's ReplyTo and the
// backend's reply queue are the same client id.
func Example() {
	ctx := context.Background()
	broker, err := amqptransport.Dial(ctx, amqptransport.Config{URL: "amqp://guest:guest@localhost:5672//"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer broker.Close()

	oid := producer.NewID()
	backend, err := rpcbackend.NewAMQP(ctx, broker, rpcbackend.Options{ReplyTo: oid})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer backend.Close()

	p := producer.New(broker, producer.Options{Backend: backend, ReplyTo: oid})
	res, err := p.SendTask(ctx, "tasks.add", []any{2, 2}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	v, err := res.Get(ctx, result.WithTimeout(10*time.Second))
	fmt.Println(v, err)
}

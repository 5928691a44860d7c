package control_test

import (
	"context"
	"fmt"

	"github.com/gworker/gworker/control"
	"github.com/gworker/gworker/gworkertest"
)

// A node answering `celery inspect ping`, asked by a Client (here over an
// in-memory transport; every transport.Broker carries it, amqptransport over RabbitMQ).
func Example() {
	tr := newMemTransport()
	env, err := gworkertest.Open(gworkertest.Config{})
	if err != nil {
		panic(err)
	}
	defer env.Close()
	if err := env.Start(context.Background()); err != nil {
		panic(err)
	}
	node, err := control.New(control.Config{Transport: tr, Worker: env.Worker(), Hostname: "go@example"})
	if err != nil {
		panic(err)
	}
	if err := node.Start(context.Background()); err != nil {
		panic(err)
	}
	defer node.Stop()
	replies, err := control.NewClient(tr, nil, nil).Broadcast(context.Background(), "ping", nil,
		control.BroadcastOptions{Reply: true, Limit: 1})
	if err != nil {
		panic(err)
	}
	fmt.Println(replies[0].Node, replies[0].Value)
	// Output: go@example map[ok:pong]
}

package canvas_test

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/gworker/gworker/canvas"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result/redisbackend"
)

// printer prints the task header of each message instead of publishing
// it. A real program passes an amqptransport.Broker to producer.New.
type printer struct{}

func (printer) Publish(_ context.Context, _, routingKey string, msg *protocol.RawMessage) error {
	fmt.Printf("%s -> %s group=%v\n", msg.Headers["task"], routingKey, msg.Headers["group"] != nil)
	return nil
}

func ExampleGroup() {
	p := producer.New(printer{}, producer.Options{})
	g := canvas.Group(canvas.Sig("tasks.add", 1, 1), canvas.Sig("tasks.add", 2, 2))
	res, err := g.ApplyAsync(context.Background(), p)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(res.Results()), "results")
	// Output:
	// tasks.add -> celery group=true
	// tasks.add -> celery group=true
	// 2 results
}

func ExampleChain() {
	p := producer.New(printer{}, producer.Options{})
	c := canvas.Chain(canvas.Sig("tasks.add", 2, 2), canvas.Sig("tasks.mul", 10), canvas.Si("tasks.log", "done"))
	res, err := c.ApplyAsync(context.Background(), p)
	if err != nil {
		fmt.Println(err)
		return
	}
	// Only the first task is published; the result is the last task's.
	fmt.Println("has parent:", res.Parent() != nil)
	// Output:
	// tasks.add -> celery group=false
	// has parent: true
}

// A chord needs a backend that counts header parts, such as the Redis
// backend.
func ExampleChord() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer rdb.Close()
	p := producer.New(printer{}, producer.Options{Backend: redisbackend.New(rdb, redisbackend.Options{})})
	ch := canvas.Chord([]*canvas.Signature{canvas.Sig("tasks.add", 1, 1), canvas.Sig("tasks.add", 2, 2)}, canvas.Sig("tasks.xsum"))
	res, err := ch.ApplyAsync(context.Background(), p)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("body result:", res.ID())
}

// A worker that ran a task with link callbacks sends them with the return
// value and lists what it sent in the task's children.
func ExampleApplyCallbacks() {
	p := producer.New(printer{}, producer.Options{})
	callbacks := []protocol.Signature{canvas.Sig("tasks.mul", 10).Signature}
	children, err := canvas.ApplyCallbacks(context.Background(), p, callbacks, int64(4),
		canvas.ApplyOptions{ParentID: "id-of-the-task", RootID: "id-of-the-task"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(children), "child")
	// Output:
	// tasks.mul -> celery group=false
	// 1 child
}

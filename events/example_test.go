package events_test

import (
	"context"
	"fmt"

	"github.com/gworker/gworker/events"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

// printer is a Publisher that prints routing keys.
type printer struct{}

func (printer) Publish(ctx context.Context, exchange, key string, msg *protocol.RawMessage) error {
	fmt.Println(exchange, key)
	return nil
}

// A worker's events: worker-online at start, task events (here turned on
// as with -E) batched under task.multi, worker-offline at stop.
func Example() {
	d, err := events.New(events.Config{Publisher: printer{}, Hostname: "go@example", HeartbeatInterval: -1, TaskEvents: true})
	if err != nil {
		panic(err)
	}
	if err := d.Start(context.Background()); err != nil {
		panic(err)
	}
	d.TaskEvent(&worker.TaskEvent{Type: worker.EventTaskStarted, Message: &protocol.Message{ID: "1", Task: "tasks.add"}})
	d.Stop(context.Background())
	// Output:
	// celeryev worker.online
	// celeryev task.multi
	// celeryev worker.offline
}

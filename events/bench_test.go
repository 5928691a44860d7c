package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/gworker/gworker/events"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

type discard struct{}

func (discard) Publish(context.Context, string, string, *protocol.RawMessage) error { return nil }

// BenchmarkTaskEvents measures what -E costs a task on its own goroutine:
// the three events of a successful task, built and queued.
func BenchmarkTaskEvents(b *testing.B) {
	d, err := events.New(events.Config{Publisher: discard{}, Hostname: "go@bench", HeartbeatInterval: -1, TaskEvents: true, QueueSize: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer d.Stop(context.Background())
	m := &protocol.Message{ID: "8d5f6f7e-0a47-4b6c-9a53-5cbb5c2f3a11", Task: "tasks.add", Args: []any{int64(2), int64(2)},
		Kwargs: map[string]any{}, RootID: "8d5f6f7e-0a47-4b6c-9a53-5cbb5c2f3a11", Headers: map[string]any{"argsrepr": "(2, 2)", "kwargsrepr": "{}"}}
	b.ReportAllocs()
	for b.Loop() {
		d.TaskEvent(&worker.TaskEvent{Type: worker.EventTaskReceived, Message: m})
		d.TaskEvent(&worker.TaskEvent{Type: worker.EventTaskStarted, Message: m})
		d.TaskEvent(&worker.TaskEvent{Type: worker.EventTaskSucceeded, Message: m, Result: int64(4), Runtime: time.Millisecond})
	}
}

package worker

import (
	"time"

	"github.com/gworker/gworker/protocol"
)

// Task event types, as Celery names them.
const (
	EventTaskReceived  = "task-received"
	EventTaskStarted   = "task-started"
	EventTaskSucceeded = "task-succeeded"
	EventTaskFailed    = "task-failed"
	EventTaskRetried   = "task-retried"
	EventTaskRejected  = "task-rejected"
	EventTaskRevoked   = "task-revoked"
)

// TaskEvent is something that happened to a task, as reported to an
// EventSink. Only the fields of its type are set.
type TaskEvent struct {
	Type string
	Time time.Time
	// Message is the task; it must not be modified.
	Message *protocol.Message
	// Result is the return value (task-succeeded).
	Result any
	// Runtime is how long the task ran (task-succeeded, and task-failed
	// when the task ran; Celery's task-failed event carries none).
	Runtime time.Duration
	// Exception and Traceback describe a failure or a retry's reason
	// (task-failed, task-retried).
	Exception *protocol.Exception
	Traceback string
	// Terminated, Signal and Expired describe a revocation (task-revoked).
	Terminated bool
	Signal     string
	Expired    bool
	// Requeue tells whether a rejected message went back to its queue
	// (task-rejected).
	Requeue bool
	// Queue is the queue the message was consumed from (task-received,
	// -started, -succeeded, -failed and -retried).
	Queue string
	// Received is when the worker received the message, and Published
	// when its producer published it, zero when the broker does not tell
	// (task-started, -succeeded and -failed of a task that ran).
	Received, Published time.Time
}

// EventSink receives task events. TaskEvent is called on the task's own
// goroutine and must return quickly: an implementation queues the event and
// publishes it elsewhere, dropping it rather than blocking when it cannot
// keep up.
type EventSink interface {
	TaskEvent(ev *TaskEvent)
}

// TaskEventsSwitch is an optional interface of EventSink for a sink that
// can be told to send no task events (celery worker without -E, or after
// disable_events): while TaskEventsEnabled returns false the worker builds
// no TaskEvent for it, which saves a few allocations per task.
type TaskEventsSwitch interface {
	TaskEventsEnabled() bool
}

// taskEvents hands task events to the configured EventSink.
type taskEvents struct {
	sink EventSink        // nil: no task events
	sw   TaskEventsSwitch // the sink's switch, when it has one
}

func newTaskEvents(sink EventSink) *taskEvents {
	e := &taskEvents{sink: sink}
	e.sw, _ = sink.(TaskEventsSwitch)
	return e
}

// on reports whether task events should be built.
func (e *taskEvents) on() bool {
	if e.sink == nil {
		return false
	}
	if e.sw != nil {
		return e.sw.TaskEventsEnabled()
	}
	return true
}

// emit sends ev, timed now unless it has a time.
func (e *taskEvents) emit(ev *TaskEvent) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	e.sink.TaskEvent(ev)
}

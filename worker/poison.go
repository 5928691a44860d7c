package worker

import (
	"context"
	"fmt"
	"strconv"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// poisoned enforces Config.MaxRedeliveries on an acks_late job about to
// start. A message redelivered again and again whose task never finished
// is a poison message: its task kills or hangs the worker every time, and
// without a cap it would do so forever (Celery's task_reject_on_worker_lost
// loop). Only deliveries marked redelivered are looked at, so the first
// delivery of every message costs nothing. The count is kept in the result
// backend when it can count (result.RedeliveryCounter): a counter per task
// id and retry number, raised only here, when a redelivered copy is about
// to start, so that prefetched messages handed back by warm shutdowns do
// not count. Otherwise it comes from the transport when its broker counts
// deliveries (DeliveryCounter: RabbitMQ quorum queues' x-delivery-count,
// which also counts those hand-backs), also when the backend cannot be
// reached. Without either, there is no cap and the task runs.
//
// Past the cap, FAILURE is stored with a WorkerLostError, the task's
// errbacks and chord run as for any failure, and the message is rejected
// without requeue. Errors a task returns are not counted: they follow the
// task's own retry policy.
func (e *executor) poisoned(j *job) bool {
	max := e.maxRedeliveries
	raw := j.d.Raw()
	if max < 0 || !raw.Redelivered {
		return false
	}
	n, source, ok := e.redeliveryCount(j)
	if !ok {
		return false
	}
	if n <= max {
		if n > 0 {
			fields := []zap.Field{zap.String("id", j.msg.ID), zap.String("task", j.msg.Task),
				zap.Int("redeliveries", n), zap.Int("max_redeliveries", max), zap.String("counted_by", source)}
			if startedBefore(j, n, source) {
				e.log.Warn("task redelivered: its previous run did not finish", fields...)
			} else {
				e.log.Debug("task redelivered; no earlier run of it is known to have started (it may only have been prefetched)", fields...)
			}
		}
		return false
	}
	exc := workerLost(fmt.Sprintf("Worker exited prematurely: task %s[%s] was delivered %d times without finishing (max redeliveries %d).",
		j.msg.Task, j.msg.ID, n+1, max))
	e.log.Error("Poison message: task "+j.msg.Name()+"["+j.msg.ID+"] never finished; failing it and rejecting its message",
		zap.String("reason", "max-redeliveries"), zap.Int("deliveries", n+1),
		zap.Int("max_redeliveries", max), zap.String("counted_by", source))
	ctx := context.Background()
	e.fail(ctx, j, exc, traceback(j.task.Name, exc), false, nil)
	j.acked = true
	if err := j.d.Reject(false); err != nil {
		e.log.Warn("reject", zap.String("id", j.msg.ID), zap.Error(err))
	}
	return true
}

// startedBefore reports whether an earlier delivery of j's message is
// known to have started its task: the result backend counted an earlier
// redelivered copy about to start (n counts the copies that started,
// this one included), or holds STARTED (task_track_started). A message
// that was only prefetched when its connection closed is redelivered too,
// and its first redelivery is counted alike: then nothing says that a run
// died.
func startedBefore(j *job, n int, source string) bool {
	return (source == "result backend" && n >= 2) || j.storedState == result.Started
}

// redeliveryCount returns how often j's message was redelivered, and from
// where: the result backend's counter, or the broker's count when the
// backend has none or cannot be reached; ok is false when neither tells.
func (e *executor) redeliveryCount(j *job) (n int, source string, ok bool) {
	if e.redeliveries != nil {
		c, err := e.redeliveries.CountRedelivery(context.Background(), j.msg.ID+"."+strconv.Itoa(j.msg.Retries))
		if err == nil {
			return int(c), "result backend", true
		}
		e.log.Warn("cannot count the redelivery of a task in the result backend", zap.String("id", j.msg.ID), zap.Error(err))
	}
	if dc, isCounter := j.d.(DeliveryCounter); isCounter {
		if n, known := dc.DeliveryCount(); known {
			return n, "x-delivery-count", true
		}
	}
	return 0, "", false
}

func workerLost(msg string) *protocol.Exception {
	return &protocol.Exception{Type: "WorkerLostError", Module: "billiard.exceptions", Args: []any{msg}}
}

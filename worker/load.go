package worker

import (
	"time"

	"github.com/gworker/gworker/transport"
)

// QueueLoad is how many of one queue's messages a worker holds: received
// and waiting for a pool slot or their rate limit (Reserved), held until
// their ETA (Held), and running (Active).
type QueueLoad struct {
	Reserved, Held, Active int
}

// Load returns the worker's load by the queue its messages were consumed
// from (the delivery's routing key where the transport does not tell), for
// autoscalers: with FreeSlots, how much of the worker is taken.
func (in *Inspector) Load() map[string]QueueLoad {
	out := map[string]QueueLoad{}
	add := func(jobs []*job, f func(*QueueLoad)) {
		for _, j := range jobs {
			q := queueOf(j)
			l := out[q]
			f(&l)
			out[q] = l
		}
	}
	add(in.pool.queued(), func(l *QueueLoad) { l.Reserved++ })
	add(in.hold.throttled(), func(l *QueueLoad) { l.Reserved++ })
	in.hold.scheduledQueues(func(q string) {
		l := out[q]
		l.Held++
		out[q] = l
	})
	add(in.active.running(), func(l *QueueLoad) { l.Active++ })
	return out
}

// Consumes reports whether the worker consumes queue q.
func (in *Inspector) Consumes(q string) bool { return in.consumers.has(q) }

// FreeSlots returns how many pool slots no task runs in.
func (in *Inspector) FreeSlots() int { return max(in.pool.concurrency()-in.active.count(), 0) }

// queueOf is the queue j's message was consumed from.
func queueOf(j *job) string {
	if q, ok := j.d.(transport.QueueOf); ok {
		return q.ConsumedFrom()
	}
	return j.msg.RoutingKey
}

// publishedAt is when j's producer published it, zero when unknown.
func publishedAt(j *job) time.Time {
	if p, ok := j.d.(transport.Published); ok {
		return p.PublishedAt()
	}
	return time.Time{}
}

package worker

import (
	"sync"

	"go.uber.org/zap"
)

// runningIDs guards against running an acks_late task twice in one worker
// when the broker redelivers its message while it still runs. RabbitMQ
// does that when a delivery stays unacknowledged longer than its
// consumer_timeout: it closes the channel, which requeues the message, and
// the consumer's new channel receives it again. Without the guard every
// consumer_timeout started another overlapping run of the same id.
//
// A redelivered copy of an id that is running is parked until the run
// ends, and then settled with the run's outcome: acknowledged when the run
// was (its own acknowledgement fails, its channel being gone), requeued
// when the run's message was requeued. Only the run stores a result.
//
// Runs are keyed by id and retry number, and only a message the broker
// marks redelivered is parked: a retry the run itself sent (retries one
// higher, delivered before the run has ended) and a message sent again
// under the same id are new work, and run, as in Celery.
type runningIDs struct {
	mu   sync.Mutex
	runs map[string]*runEntry
}

type runEntry struct {
	first *job
	twins []*job
}

// join parks j when it is a redelivered copy of a running task (same id
// and retry number) and returns true; otherwise it records j as running,
// unless a run of its key is recorded already, and returns false.
func (r *runningIDs) join(j *job) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.runs == nil {
		r.runs = map[string]*runEntry{}
	}
	key := finishedKey(j.msg.ID, j.msg.Retries)
	if e, ok := r.runs[key]; ok && e.first != j {
		if !j.d.Raw().Redelivered {
			return false // not a copy: it runs, unrecorded
		}
		e.twins = append(e.twins, j)
		return true
	}
	r.runs[key] = &runEntry{first: j}
	return false
}

// done ends j's run and returns the copies parked meanwhile.
func (r *runningIDs) done(j *job) []*job {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := finishedKey(j.msg.ID, j.msg.Retries)
	e, ok := r.runs[key]
	if !ok || e.first != j {
		return nil
	}
	delete(r.runs, key)
	return e.twins
}

// joinRun is called before an acks_late job starts: it reports true when
// the job is a redelivered copy of a running task and was parked.
func (e *executor) joinRun(j *job) bool {
	if !e.runs.join(j) {
		return false
	}
	e.log.Warn("Task "+j.msg.Name()+"["+j.msg.ID+"] redelivered while it still runs in this worker (consumer_timeout?); not starting it again",
		zap.String("id", j.msg.ID), zap.String("reason", "duplicate-running"))
	return true
}

// endRun settles the copies parked during j's run with j's outcome.
func (e *executor) endRun(j *job) {
	for _, t := range e.runs.done(j) {
		var err error
		if j.requeued {
			err = t.d.Reject(true)
		} else {
			err = t.d.Ack()
		}
		t.acked = true
		if err != nil {
			e.log.Warn("settle redelivered copy", zap.String("id", t.msg.ID), zap.Error(err))
			continue
		}
		e.log.Info("Task "+t.msg.Name()+"["+t.msg.ID+"] redelivered copy settled with the outcome of its run",
			zap.String("id", t.msg.ID), zap.Bool("requeued", j.requeued))
	}
}

// staleBeforeStart reports (and logs) an acks_late job whose delivery died
// while it waited to start, after a lost connection: the broker has
// requeued the message, so the job is dropped without running.
func (e *executor) staleBeforeStart(j *job) bool {
	sc, ok := j.d.(StaleChecker)
	if !ok || !sc.Stale() {
		return false
	}
	j.acked = true // nothing can be sent for it any more
	e.log.Info("Task "+j.msg.Name()+"["+j.msg.ID+"] not started: its channel closed while it waited; the broker delivers it again",
		zap.String("id", j.msg.ID), zap.String("reason", "stale-delivery"))
	return true
}

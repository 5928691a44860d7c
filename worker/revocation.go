package worker

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// revocation keeps tasks that must not run from running: those whose id
// is in the revoked set, those stamped with a revoked stamp value, and
// those whose message expired. It revokes ids and stamps at run time,
// ending the waits of held ones and terminating running ones, and
// announces every task it discards as Celery does.
type revocation struct {
	set       *RevokedSet
	stamps    *revokedStamps
	hold      *hold
	active    *activeTasks
	results   *resultWriter
	followups *followupSender
	events    *taskEvents
	counts    *counters
	log       *zap.Logger
}

// revoke adds ids to the revoked set: a task with one of these ids is not
// run when it is received later, and one waiting in the worker (held for
// its ETA, waiting for its rate limit, or queued) is discarded as REVOKED
// instead of running. With terminate, the contexts of running tasks with
// these ids are cancelled. It returns the ids of the running tasks it
// terminated.
func (r *revocation) revoke(ids []string, terminate bool, signal string) []string {
	if len(ids) == 0 {
		return nil
	}
	r.set.Add(ids...)
	r.markRevoked(ids)
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	// Held and rate-limited tasks are released now; the revoked check on
	// their way to the pool discards them.
	r.hold.expedite(want)
	if !terminate {
		return nil
	}
	return r.active.terminate(want, signal)
}

// markRevokedTimeout bounds the writes of markRevoked together.
const markRevokedTimeout = 5 * time.Second

// markRevoked stores REVOKED (TaskRevokedError('revoked')) for ids at once,
// as Celery 5.6.2's revoke does, so that a client waiting on one of them
// learns it now, not when a worker receives the task. A SUCCESS already
// stored stays; a failed write is logged and not retried (the worker that
// receives the task stores REVOKED then).
func (r *revocation) markRevoked(ids []string) {
	b := r.results.backend
	if b == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), markRevokedTimeout)
	defer cancel()
	exc := taskRevoked("revoked").Value()
	done := time.Now().UTC()
	for _, id := range ids {
		m := &result.Meta{TaskID: id, Status: result.Revoked, Result: exc, DateDone: &done}
		if err := b.Store(ctx, m); err != nil {
			r.log.Warn("Failed to mark task "+id+" as revoked in backend: "+err.Error(), zap.String("id", id))
		}
	}
}

// discardIfRevoked stores REVOKED for a task whose id was revoked, or
// that carries a revoked stamp value, and acknowledges its message, as
// Celery does for a revoked task it receives.
func (r *revocation) discardIfRevoked(j *job) bool {
	if r.set.Contains(j.msg.ID) {
		r.announce(j, "revoked", false, "")
		return true
	}
	name, value, ok := r.stamps.match(j.msg)
	if !ok {
		return false
	}
	note := " (revoked by header: " + protocol.PyRepr(protocol.Dict{{Key: name, Value: value}}) + ")"
	r.announceNoted(j, "revoked", false, "", note)
	return true
}

// discardIfExpired stores REVOKED(expired) and acks when the message has
// expired, as Celery does at receipt and before running.
func (r *revocation) discardIfExpired(j *job) bool {
	if j.msg.Expires == nil || time.Now().Before(*j.msg.Expires) {
		return false
	}
	r.announce(j, "expired", false, "")
	return true
}

// announce is Celery's Request._announce_revoked: REVOKED with
// TaskRevokedError(reason), chord part counted, task-revoked event, ack.
func (r *revocation) announce(j *job, reason string, terminated bool, signal string) {
	r.announceNoted(j, reason, terminated, signal, "")
}

// announceNoted is announce with note appended to the log line.
func (r *revocation) announceNoted(j *job, reason string, terminated bool, signal, note string) {
	r.counts.revoked.Add(1)
	msg := j.msg
	r.log.Info("Discarding revoked task: "+msg.Name()+"["+msg.ID+"]"+note, zap.String("reason", reason))
	if r.events.on() {
		r.events.emit(&TaskEvent{Type: EventTaskRevoked, Message: msg, Terminated: terminated, Signal: signal, Expired: reason == "expired"})
	}
	ctx := context.Background()
	exc := taskRevoked(reason)
	r.results.store(ctx, r.results.meta(msg, result.Revoked, exc.Value(), "", nil))
	r.followups.chordPart(ctx, msg, result.Revoked, exc.Value())
	j.ack(r.log)
}

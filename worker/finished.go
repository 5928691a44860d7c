package worker

import (
	"context"
	"strconv"
	"sync"

	"go.uber.org/zap"

	"github.com/gworker/gworker/result"
)

// finishedIDs remembers the last acks_late runs that finished here and
// were acknowledged, by task id and retry number, so that a redelivered
// copy is not run again. An acknowledgement can be lost with the
// connection that carried it, with or without an error: the broker then
// delivers the message again although its task finished. Celery runs such
// a copy a second time; gworker acknowledges it without running it. A
// retry carries a higher retries header and so another key: it runs.
//
// The memory is bounded (the oldest key goes first); past it, and across
// restarts, the result backend's SUCCESS tells the same.
type finishedIDs struct {
	mu   sync.Mutex
	max  int
	keys map[string]bool
	ring []string // keys in the order they came, as a circular buffer
	next int
}

func newFinishedIDs(max int) *finishedIDs {
	return &finishedIDs{max: max, keys: map[string]bool{}}
}

func finishedKey(id string, retries int) string { return id + "." + strconv.Itoa(retries) }

// add remembers key, forgetting the oldest key when full.
func (f *finishedIDs) add(key string) {
	if f == nil || f.max <= 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys[key] {
		return
	}
	if len(f.ring) < f.max {
		f.ring = append(f.ring, key)
	} else {
		delete(f.keys, f.ring[f.next])
		f.ring[f.next] = key
		f.next = (f.next + 1) % f.max
	}
	f.keys[key] = true
}

// has reports whether key is remembered.
func (f *finishedIDs) has(key string) bool {
	if f == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keys[key]
}

// finishedBefore reports (and settles) a redelivered acks_late job whose
// task already finished: it ran here and was acknowledged (the ack was
// lost), or the result backend holds its SUCCESS. Its message is
// acknowledged without running the task again and its stored result is
// left as it is. Only redelivered messages are looked at, so the first
// delivery of every message costs nothing.
func (e *executor) finishedBefore(j *job) bool {
	if !j.d.Raw().Redelivered {
		return false
	}
	how := ""
	if e.finished.has(finishedKey(j.msg.ID, j.msg.Retries)) {
		how = "it finished in this worker"
	} else if b := e.results.backend; b != nil {
		m, err := b.Get(context.Background(), j.msg.ID)
		switch {
		case err != nil:
			e.log.Warn("cannot read the result of a redelivered task; running it", zap.String("id", j.msg.ID), zap.Error(err))
		case m != nil:
			j.storedState = m.Status
			if m.Status == result.Success {
				how = "its result is SUCCESS"
			}
		}
	}
	if how == "" {
		return false
	}
	e.log.Info("Task "+j.msg.Name()+"["+j.msg.ID+"] redelivered although "+how+" (its acknowledgement was lost); acknowledged without running it again",
		zap.String("id", j.msg.ID), zap.Int("retries", j.msg.Retries), zap.String("reason", "already-finished"))
	j.ack(e.log)
	return true
}

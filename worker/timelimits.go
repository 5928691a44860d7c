package worker

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/gworker/gworker/protocol"
)

// timeLimits decide the hard and soft time limits of a task: a message's
// own, else those set at run time (SetTimeLimit), else the task's, else
// the worker's (celery worker --time-limit, --soft-time-limit). Reading
// them takes no lock.
type timeLimits struct {
	hard, soft time.Duration // the worker's

	mu     sync.Mutex // serialises set
	byTask atomic.Pointer[map[string]taskLimits]
}

// taskLimits are the limits of a task set at run time (zero: none).
type taskLimits struct{ soft, hard time.Duration }

func newTimeLimits(hard, soft time.Duration) *timeLimits {
	return &timeLimits{hard: hard, soft: soft}
}

// set sets the limits of the task named task, over its own.
func (l *timeLimits) set(task string, soft, hard time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := map[string]taskLimits{}
	if cur := l.byTask.Load(); cur != nil {
		for k, v := range *cur {
			next[k] = v
		}
	}
	next[task] = taskLimits{soft: soft, hard: hard}
	l.byTask.Store(&next)
}

// of returns the limits of msg, a message of task t.
func (l *timeLimits) of(msg *protocol.Message, t *Task) (hard, soft time.Duration) {
	hard, soft = l.hard, l.soft
	if t.Options.TimeLimit > 0 {
		hard = t.Options.TimeLimit
	}
	if t.Options.SoftTimeLimit > 0 {
		soft = t.Options.SoftTimeLimit
	}
	if m := l.byTask.Load(); m != nil {
		if set, ok := (*m)[t.Name]; ok {
			hard, soft = set.hard, set.soft
		}
	}
	if msg.TimeLimit != nil {
		hard = seconds(*msg.TimeLimit)
	}
	if msg.SoftTimeLimit != nil {
		soft = seconds(*msg.SoftTimeLimit)
	}
	return hard, soft
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

package worker

import (
	"testing"
	"time"

	"github.com/gworker/gworker/protocol"
)

func TestTimeLimitsPrecedence(t *testing.T) {
	l := newTimeLimits(10*time.Second, 5*time.Second)
	plain := &Task{Name: "plain"}
	own := &Task{Name: "own", Options: TaskOptions{TimeLimit: 20 * time.Second, SoftTimeLimit: 15 * time.Second}}
	msg := &protocol.Message{}
	limit, softLimit := 30.0, 25.0
	withLimits := &protocol.Message{TimeLimit: &limit, SoftTimeLimit: &softLimit}

	check := func(what string, m *protocol.Message, task *Task, hard, soft time.Duration) {
		t.Helper()
		if h, s := l.of(m, task); h != hard || s != soft {
			t.Errorf("%s: hard %v soft %v, want %v %v", what, h, s, hard, soft)
		}
	}
	check("worker's", msg, plain, 10*time.Second, 5*time.Second)
	check("task's", msg, own, 20*time.Second, 15*time.Second)
	check("message's", withLimits, own, 30*time.Second, 25*time.Second)

	l.set("own", time.Second, 2*time.Second)
	check("set at run time", msg, own, 2*time.Second, time.Second)
	check("set for another task", msg, plain, 10*time.Second, 5*time.Second)
	check("message's over set", withLimits, own, 30*time.Second, 25*time.Second)
	l.set("own", 0, 0)
	check("set to none", msg, own, 0, 0)
}

package worker

import (
	"testing"

	"github.com/gworker/gworker/protocol"
)

type eventList struct{ got []*TaskEvent }

func (l *eventList) TaskEvent(ev *TaskEvent) { l.got = append(l.got, ev) }

type switchedList struct {
	eventList
	enabled bool
}

func (s *switchedList) TaskEventsEnabled() bool { return s.enabled }

func TestTaskEvents(t *testing.T) {
	if newTaskEvents(nil).on() {
		t.Error("events on without a sink")
	}
	l := &eventList{}
	e := newTaskEvents(l)
	if !e.on() {
		t.Fatal("events off with a sink")
	}
	e.emit(&TaskEvent{Type: EventTaskStarted, Message: &protocol.Message{ID: "x"}})
	if len(l.got) != 1 || l.got[0].Time.IsZero() {
		t.Fatalf("emitted %+v", l.got)
	}

	s := &switchedList{}
	e = newTaskEvents(s)
	if e.on() {
		t.Error("events on while the sink's switch is off")
	}
	s.enabled = true
	if !e.on() {
		t.Error("events off while the sink's switch is on")
	}
}

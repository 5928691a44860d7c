package worker

import (
	"reflect"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

type testRevocation struct {
	*revocation
	backend   *memBackend
	events    *eventList
	followups *countingFollowups
	probe     *holdProbe
}

func newTestRevocation() *testRevocation {
	b, ev, f, p := &memBackend{}, &eventList{}, &countingFollowups{}, newHoldProbe()
	log := zap.NewNop()
	r := &revocation{
		set:       NewRevokedSet(0, 0),
		stamps:    newRevokedStamps(0),
		hold:      newHold(log, 4, 10, -1, 0, false, newRateLimits(), protocol.DecodeOptions{}, p.hooks()),
		active:    newActiveTasks("celery@h", 1),
		results:   &resultWriter{backend: b, log: log, stop: make(chan struct{})},
		followups: &followupSender{f: f, log: log},
		events:    newTaskEvents(ev),
		counts:    &counters{},
		log:       log,
	}
	return &testRevocation{revocation: r, backend: b, events: ev, followups: f, probe: p}
}

func TestRevocationDiscardsRevokedIDs(t *testing.T) {
	r := newTestRevocation()
	j := testJob(t, "t", "gone", nil, TaskOptions{})
	j.msg.Chord = &protocol.Signature{}
	if r.discardIfRevoked(j) {
		t.Fatal("discarded an id that is not revoked")
	}
	r.set.Add("gone")
	if !r.discardIfRevoked(j) {
		t.Fatal("kept a revoked id")
	}
	if got := r.backend.states("gone"); !reflect.DeepEqual(got, []result.State{result.Revoked}) {
		t.Errorf("stored %v", got)
	}
	if got := j.delivery().outcome(); !reflect.DeepEqual(got, []string{"ack"}) {
		t.Errorf("settled %v", got)
	}
	if len(r.events.got) != 1 || r.events.got[0].Type != EventTaskRevoked || r.events.got[0].Expired {
		t.Errorf("events %+v", r.events.got)
	}
	if r.followups.chord != 1 || r.counts.revoked.Load() != 1 {
		t.Errorf("chord parts %d, revoked %d", r.followups.chord, r.counts.revoked.Load())
	}
}

func TestRevocationDiscardsExpiredMessages(t *testing.T) {
	r := newTestRevocation()
	j := testJob(t, "t", "late", nil, TaskOptions{})
	future := time.Now().Add(time.Hour)
	j.msg.Expires = &future
	if r.discardIfExpired(j) {
		t.Fatal("discarded a message that has not expired")
	}
	past := time.Now().Add(-time.Second)
	j.msg.Expires = &past
	if !r.discardIfExpired(j) {
		t.Fatal("kept an expired message")
	}
	if len(r.events.got) != 1 || !r.events.got[0].Expired {
		t.Errorf("events %+v", r.events.got)
	}
	m := r.backend.metas()
	if len(m) != 1 || m[0].Status != result.Revoked {
		t.Fatalf("stored %+v", m)
	}
	if v, _ := m[0].Result.(protocol.Dict).Get("exc_message"); !reflect.DeepEqual(v, []any{"expired"}) {
		t.Errorf("exception %v", m[0].Result)
	}
}

func TestRevocationRevokeEndsWaitsAndTerminates(t *testing.T) {
	r := newTestRevocation()
	held := testJob(t, "t", "held", nil, TaskOptions{})
	r.hold.eta(held, time.Hour, false)
	running := testJob(t, "t", "running", nil, TaskOptions{})
	r.active.start(running)

	if got := r.revoke([]string{"held", "running"}, false, ""); got != nil {
		t.Fatalf("terminated %v without terminate", got)
	}
	if !r.set.Contains("held") || !r.set.Contains("running") {
		t.Error("ids not in the revoked set")
	}
	if d := recv(t, r.probe.due, "due"); !sameMessage(d.j, held) {
		t.Error("the held message's wait did not end")
	}
	if got := r.revoke([]string{"running"}, true, "SIGTERM"); !reflect.DeepEqual(got, []string{"running"}) {
		t.Errorf("terminated %v", got)
	}
	if !r.active.end(running) {
		t.Error("the running task was not terminated")
	}
	if r.revoke(nil, true, "") != nil {
		t.Error("revoking nothing terminated something")
	}
}

package worker

import (
	"reflect"
	"testing"
	"time"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// stamped gives j's message the stamps headers a Celery 5.5 producer
// writes: stamped_headers lists names, stamps holds their values.
func stamped(j *job, stamps map[string]any, names ...string) *job {
	list := make([]any, len(names))
	for i, n := range names {
		list[i] = n
	}
	j.msg.Headers = map[string]any{"stamped_headers": list, "stamps": stamps}
	if d, ok := j.d.(*testDelivery); ok {
		// The hold keeps the raw message, not the decoded one.
		raw, err := protocol.Encode(j.msg, protocol.EncodeOptions{})
		if err != nil {
			panic(err)
		}
		d.raw = raw
	}
	return j
}

func TestRevokedStampsMatchAsCelery(t *testing.T) {
	s := newRevokedStamps(0)
	msg := func(stamps map[string]any, names ...string) *protocol.Message {
		return stamped(&job{msg: &protocol.Message{ID: "x"}}, stamps, names...).msg
	}
	if _, _, ok := s.match(msg(map[string]any{"k": "v"}, "k")); ok {
		t.Fatal("an empty set matched")
	}
	s.add("k", []any{"v", int64(1)})
	s.add("list", []any{"b"})
	for _, c := range []struct {
		msg   *protocol.Message
		name  string
		value any
	}{
		{msg(map[string]any{"k": "v"}, "k"), "k", "v"},
		{msg(map[string]any{"k": 1.0}, "k"), "k", 1.0},   // 1 == 1.0
		{msg(map[string]any{"k": true}, "k"), "k", true}, // 1 == True
		{msg(map[string]any{"list": []any{"a", "b"}}, "list"), "list", "b"},
		{msg(map[string]any{"other": "v", "k": "v"}, "other", "k"), "k", "v"},
	} {
		name, value, ok := s.match(c.msg)
		if !ok || name != c.name || !reflect.DeepEqual(value, c.value) {
			t.Errorf("%v: matched %v %q %v, want %q %v", c.msg.Headers, ok, name, value, c.name, c.value)
		}
	}
	for _, m := range []*protocol.Message{
		msg(map[string]any{"k": "w"}, "k"),
		msg(map[string]any{"k": "1"}, "k"),             // "1" != 1
		msg(map[string]any{"k": "v"}),                  // not in stamped_headers
		msg(map[string]any{"k": []any{"x", "y"}}, "k"), // no element revoked
		{ID: "plain"},
	} {
		if name, value, ok := s.match(m); ok {
			t.Errorf("%v matched %q %v", m.Headers, name, value)
		}
	}
}

func TestRevokedStampsAreCapped(t *testing.T) {
	s := newRevokedStamps(3)
	s.add("k", []any{"a", "b", "a"})
	s.add("j", []any{"c", "d"})
	got := s.snapshot()
	if want := map[string][]any{"k": {"b"}, "j": {"c", "d"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("kept %v, want %v (the oldest forgotten first)", got, want)
	}
	for i := 0; i < 1000; i++ {
		s.add("n", []any{int64(i)})
	}
	if got := s.snapshot(); len(got) != 1 || !reflect.DeepEqual(got["n"], []any{int64(997), int64(998), int64(999)}) {
		t.Fatalf("kept %v", got)
	}
	if s.n.Load() != 3 || cap(s.order) > 2*3+64 {
		t.Fatalf("n %d, order cap %d", s.n.Load(), cap(s.order))
	}
}

func TestRevocationDiscardsRevokedStamps(t *testing.T) {
	r := newTestRevocation()
	log, logs := observed()
	r.log = log
	j := stamped(testJob(t, "t", "s-1", nil, TaskOptions{}), map[string]any{"mtask_id": []any{"a", "b"}}, "mtask_id")
	if r.discardIfRevoked(j) {
		t.Fatal("discarded a task whose stamps are not revoked")
	}
	r.revokeStamps(map[string][]any{"mtask_id": {"b"}}, false, "")
	if !r.discardIfRevoked(j) {
		t.Fatal("kept a task with a revoked stamp")
	}
	if got := r.backend.states("s-1"); !reflect.DeepEqual(got, []result.State{result.Revoked}) {
		t.Errorf("stored %v", got)
	}
	if got := j.delivery().outcome(); !reflect.DeepEqual(got, []string{"ack"}) {
		t.Errorf("settled %v", got)
	}
	if len(r.events.got) != 1 || r.events.got[0].Type != EventTaskRevoked {
		t.Errorf("events %+v", r.events.got)
	}
	want := "Discarding revoked task: t[s-1] (revoked by header: {'mtask_id': 'b'})"
	if l := logs.FilterMessage(want); l.Len() != 1 {
		var all []string
		for _, e := range logs.All() {
			all = append(all, e.Message)
		}
		t.Errorf("log %q, want %q", all, want)
	}
}

func TestRevocationRevokeStampsEndsWaitsAndTerminates(t *testing.T) {
	r := newTestRevocation()
	held := stamped(testJob(t, "t", "held", nil, TaskOptions{}), map[string]any{"k": "v"}, "k")
	r.hold.eta(held, time.Hour, false)
	other := stamped(testJob(t, "t", "other", nil, TaskOptions{}), map[string]any{"k": "w"}, "k")
	r.hold.eta(other, time.Hour, false)
	running := stamped(testJob(t, "t", "running", nil, TaskOptions{}), map[string]any{"k": []any{"v", "z"}, "j": "q"}, "k", "j")
	r.active.start(running)
	plain := testJob(t, "t", "plain", nil, TaskOptions{})
	r.active.start(plain)

	if got := r.revokeStamps(map[string][]any{"k": {"v"}}, false, ""); got.Terminated != nil || got.Matched != nil {
		t.Fatalf("terminated %+v without terminate", got)
	}
	if d := recv(t, r.probe.due, "due"); d.j.msg.ID != held.msg.ID {
		t.Errorf("the wait of %s ended, want held", d.j.msg.ID)
	}
	select {
	case d := <-r.probe.due:
		t.Errorf("the wait of %s ended too", d.j.msg.ID)
	case <-time.After(50 * time.Millisecond):
	}
	got := r.revokeStamps(map[string][]any{"k": {"v", "z", "y"}, "j": {"q"}}, true, "SIGKILL")
	want := StampRevocation{Terminated: []string{"running"}, Matched: map[string][]any{"k": {"v", "z"}, "j": {"q"}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("revoke with terminate: %+v, want %+v", got, want)
	}
	if !r.active.end(running) || running.signal != "SIGKILL" {
		t.Error("the running task was not terminated with SIGKILL")
	}
	if r.active.end(plain) {
		t.Error("an unstamped task was terminated")
	}
	if snap := r.stamps.snapshot(); !reflect.DeepEqual(snap, map[string][]any{"k": {"v", "z", "y"}, "j": {"q"}}) {
		t.Errorf("revoked stamps %v", snap)
	}
	r.hold.close()
}

func TestRequestStamps(t *testing.T) {
	j := stamped(testJob(t, "t", "r", nil, TaskOptions{}), map[string]any{"k": "v", "extra": "x"}, "k", "missing")
	r := &Request{Message: j.msg}
	if got := r.StampedHeaders(); !reflect.DeepEqual(got, []string{"k", "missing"}) {
		t.Errorf("stamped headers %v", got)
	}
	if got := r.Stamps(); !reflect.DeepEqual(got, map[string]any{"k": "v", "missing": nil}) {
		t.Errorf("stamps %v", got)
	}
	if got := (&Request{Message: &protocol.Message{}}).Stamps(); got != nil {
		t.Errorf("stamps of an unstamped task %v", got)
	}
}

// With result_extended, the stored meta carries the task's stamps, as
// Celery 5.5's does; without, it does not.
func TestExtendedMetaCarriesStamps(t *testing.T) {
	j := stamped(testJob(t, "t", "m", nil, TaskOptions{}), map[string]any{"k": "v", "l": []any{int64(1)}}, "l", "k")
	m := (&resultWriter{extended: true}).meta(j.msg, result.Success, nil, "", nil)
	if !reflect.DeepEqual(m.StampedHeaders, []string{"l", "k"}) || !reflect.DeepEqual(m.Stamps, map[string]any{"k": "v", "l": []any{int64(1)}}) {
		t.Errorf("extended meta stamps %v %v", m.StampedHeaders, m.Stamps)
	}
	if m := (&resultWriter{}).meta(j.msg, result.Success, nil, "", nil); m.StampedHeaders != nil || m.Stamps != nil {
		t.Errorf("meta without result_extended has stamps %v %v", m.StampedHeaders, m.Stamps)
	}
}

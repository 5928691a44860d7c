package worker_test

import (
	"strings"
	"testing"

	"github.com/gworker/gworker/worker"
)

// A message rejected for its id writes no result under that id (a 20 kB
// Redis key, or one holding a newline), and one rejected for its group id
// writes FAILURE under its valid task id only.
func TestRejectedBadIDWritesNothing(t *testing.T) {
	reg := worker.NewRegistry()
	if err := reg.Register("tasks.noop", func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	e := newFakeEnv(t, reg, nil)
	bad := []string{"a\nb", "a\x00b", strings.Repeat("x", 256), strings.Repeat("y", 20000)}
	var ds []*fakeDelivery
	for _, id := range bad {
		raw := taskRaw(t, "tasks.noop", "placeholder")
		raw.Headers["id"] = id
		ds = append(ds, e.broker.deliver(raw, nil))
	}
	// An invalid body too: the id is what makes it unstorable.
	raw := taskRaw(t, "tasks.noop", "placeholder")
	raw.Headers["id"] = "c\nd"
	raw.Body = []byte("{not json")
	ds = append(ds, e.broker.deliver(raw, nil))
	// A valid task id with an invalid group id.
	raw = taskRaw(t, "tasks.noop", "good-id")
	raw.Headers["group"] = "g\nh"
	ds = append(ds, e.broker.deliver(raw, nil))

	e.broker.waitSettled(t, len(ds))
	for i, d := range ds {
		if got := e.broker.c.outcome(d); len(got) != 1 || got[0] != "reject" {
			t.Errorf("delivery %d: %v, want one reject", i, got)
		}
	}
	// The group case stores synchronously before its reject.
	keys := e.backend.keys()
	if len(keys) != 1 || keys[0] != "good-id" {
		t.Errorf("results stored under %.80q, want only good-id", keys)
	}
}

package worker_test

import (
	"strings"
	"testing"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

func withReplacingTasks(_ *worker.Config, r *worker.Registry) {
	r.MustRegister("t.add_replaced", func(x, y int64) error {
		return worker.Replace(protocol.Signature{Task: "tasks.add", Args: []any{x, y}})
	}, worker.Params("x", "y"))
	r.MustRegister("t.bad_replacement", func() error {
		return worker.Replace(protocol.Signature{}) // no task name
	})
	r.MustRegister("t.empty_chain", func() error {
		return worker.Replace(protocol.Signature{Task: "celery.chain", SubtaskType: "chain", Kwargs: map[string]any{"tasks": []any{}}})
	})
}

// A task replaced by a signature stores no result of its own: the
// replacement runs under its id, so the caller gets the replacement's
// result. A replacement that cannot be sent fails the task, and the worker
// goes on.
func TestReplacedTaskResultIsTheReplacements(t *testing.T) {
	e := newEnv(t, withReplacingTasks)
	e.start()
	r := e.send("t.add_replaced", []any{int64(2), int64(40)}, nil)
	if v, err := e.get(r); err != nil || v != int64(42) {
		t.Fatalf("replaced task: %v %v", v, err)
	}
	if m := e.meta(r.ID()); m.Status != "SUCCESS" || m.Result != int64(42) {
		t.Errorf("stored %+v", m)
	}

	_, err := e.get(e.send("t.bad_replacement", nil, nil))
	if exc := wantException(t, err, "Exception"); !strings.Contains(exc.Error(), "invalid signature") {
		t.Errorf("bad replacement: %v", exc)
	}
	_, err = e.get(e.send("t.empty_chain", nil, nil))
	if exc := wantException(t, err, "ImproperlyConfigured"); !strings.Contains(exc.Error(), "Cannot replace with an empty chain") {
		t.Errorf("empty chain: %v", exc)
	}
	if v, err := e.get(e.send("tasks.add", []any{int64(1), int64(1)}, nil)); err != nil || v != int64(2) {
		t.Errorf("after a bad replacement: %v %v", v, err)
	}
}

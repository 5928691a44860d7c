package worker

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

func TestResultWriterMeta(t *testing.T) {
	r := &resultWriter{hostname: "celery@h", pid: 42, log: zap.NewNop()}
	msg := &protocol.Message{ID: "id-1", Task: "tasks.add", Args: []any{int64(1)}, GroupID: "g", ParentID: "p", Retries: 2, RoutingKey: "q"}

	m := r.meta(msg, result.Success, int64(3), "", []any{"child"})
	if m.TaskID != "id-1" || m.Status != result.Success || m.Result != int64(3) || m.GroupID != "g" || m.ParentID != "p" || len(m.Children) != 1 {
		t.Fatalf("meta %+v", m)
	}
	if m.DateDone == nil {
		t.Error("a ready state has no date_done")
	}
	if m.Extended || m.Name != "" || m.Worker != "" {
		t.Errorf("extended fields without ResultExtended: %+v", m)
	}

	st := r.started(msg)
	if st.Status != result.Started || st.DateDone != nil {
		t.Fatalf("started %+v", st)
	}
	info, _ := st.Result.(protocol.Dict)
	if pid, _ := info.Get("pid"); pid != int64(42) {
		t.Errorf("started pid %v", pid)
	}
	if h, _ := info.Get("hostname"); h != "celery@h" {
		t.Errorf("started hostname %v", h)
	}

	r.extended = true
	m = r.meta(msg, result.Failure, nil, "tb", nil)
	if !m.Extended || m.Name != "tasks.add" || m.Worker != "celery@h" || m.Retries != 2 || m.Queue != "q" || len(m.Args) != 1 || m.Traceback != "tb" {
		t.Errorf("extended meta %+v", m)
	}
}

func TestResultWriterStoreRetriesAFailingBackend(t *testing.T) {
	down := errors.New("down")
	b := &memBackend{fail: func(call int) error {
		if call <= 2 {
			return down
		}
		return nil
	}}
	r := &resultWriter{backend: b, log: zap.NewNop(), stop: make(chan struct{})}
	msg := &protocol.Message{ID: "id-1", Task: "t"}
	if err := r.store(context.Background(), r.meta(msg, result.Success, nil, "", nil)); err != nil {
		t.Fatal(err)
	}
	if got := r.retries.Load(); got != 2 {
		t.Errorf("retries %d, want 2", got)
	}
	if got := b.states("id-1"); len(got) != 1 {
		t.Errorf("stored %v", got)
	}
}

func TestResultWriterStopEndsTheRetries(t *testing.T) {
	down := errors.New("down")
	b := &memBackend{fail: func(int) error { return down }}
	stop := make(chan struct{})
	close(stop)
	r := &resultWriter{backend: b, log: zap.NewNop(), stop: stop}
	err := r.storeFailure(context.Background(), &protocol.Message{ID: "x"}, protocol.NewException("KeyError", "k"), "", nil)
	if !errors.Is(err, down) {
		t.Fatalf("err %v", err)
	}
	if b.calls != 1 || r.retries.Load() != 1 {
		t.Errorf("calls %d, retries %d; want 1 and 1", b.calls, r.retries.Load())
	}
}

func TestResultWriterDoesNotRetryAnEncodeError(t *testing.T) {
	b := &memBackend{fail: func(int) error { return &protocol.EncodeError{Msg: "chan"} }}
	r := &resultWriter{backend: b, log: zap.NewNop(), stop: make(chan struct{})}
	err := r.store(context.Background(), r.meta(&protocol.Message{ID: "x"}, result.Success, nil, "", nil))
	if !isEncodeError(err) || b.calls != 1 || r.retries.Load() != 0 {
		t.Errorf("err %v, calls %d, retries %d", err, b.calls, r.retries.Load())
	}
}

func TestResultWriterWithoutBackendStoresNothing(t *testing.T) {
	r := &resultWriter{log: zap.NewNop()}
	if err := r.store(context.Background(), &result.Meta{TaskID: "x"}); err != nil {
		t.Fatal(err)
	}
}

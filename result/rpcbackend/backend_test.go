package rpcbackend_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/rpcbackend"
)

func TestEncodeReplyMatchesCelery(t *testing.T) {
	tb := "Traceback (most recent call last):\n  File \"/usr/lib/python3/dist-packages/celery/app/trace.py\", line 451, in trace_task\n    R = retval = fun(*args, **kwargs)\n                 ^^^^^^^^^^^^^^^^^^^^\n  File \"/usr/lib/python3/dist-packages/celery/app/trace.py\", line 734, in __protected_call__\n    return self.run(*args, **kwargs)\n           ^^^^^^^^^^^^^^^^^^^^^^^^^\n  File \"/app/capture/protoapp.py\", line 75, in fail\n    raise ValueError(msg, 42)\nValueError: ('x', 42)\n"
	cases := map[string]*result.Meta{
		"reply_success": {TaskID: "00000400-0000-4000-8000-000000000001", Status: result.Success, Result: int64(4)},
		"reply_started": {TaskID: "00000400-0000-4000-8000-000000000001", Status: result.Started,
			Result: protocol.Dict{{Key: "pid", Value: 11057}, {Key: "hostname", Value: "celery@vm"}}},
		"reply_failure": {TaskID: "00000400-0000-4000-8000-000000000002", Status: result.Failure,
			Result: protocol.NewException("ValueError", "x", 42), Traceback: tb},
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join("testdata", name+".body.bin"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := rpcbackend.EncodeReply(m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("body:\n got %s\nwant %s", got, want)
			}
		})
	}
	if _, err := rpcbackend.EncodeReply(&result.Meta{Status: result.Success}); err == nil {
		t.Error("meta without task id accepted")
	}
	if _, err := rpcbackend.EncodeReply(&result.Meta{TaskID: "x"}); err == nil {
		t.Error("meta without status accepted")
	}
}

// TestGoClientAndWorker runs both sides in Go over RabbitMQ: the worker
// side publishes states to the client's reply queue, the client keeps the
// latest per task.
func TestGoClientAndWorker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := dial(t)
	oid := producer.NewID()
	client, err := rpcbackend.NewAMQP(ctx, b, rpcbackend.Options{ReplyTo: oid})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	worker := rpcbackend.NewAMQPWorkerSide(b)

	id := producer.NewID()
	if m, err := client.Get(ctx, id); err != nil || m.Status != result.Pending {
		t.Fatalf("before any reply: %v %v", m, err)
	}
	// Nothing is sent without reply_to.
	if err := worker.Store(ctx, &result.Meta{TaskID: id, Status: result.Success, Result: int64(1)}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*result.Meta{
		{TaskID: id, Status: result.Started, Result: map[string]any{"pid": int64(1), "hostname": "go@test"}, ReplyTo: oid},
		{TaskID: id, Status: result.Success, Result: int64(4), ReplyTo: oid, CorrelationID: id},
	} {
		if err := worker.Store(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	r := result.NewAsyncResult(id, client)
	v, err := r.Get(ctx, result.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if v != int64(4) {
		t.Fatalf("Get = %#v, want 4", v)
	}

	// A late STARTED does not hide the SUCCESS.
	if err := worker.Store(ctx, &result.Meta{TaskID: id, Status: result.Started, ReplyTo: oid}); err != nil {
		t.Fatal(err)
	}

	// A failure, joined natively together with the success.
	failed := producer.NewID()
	if err := worker.Store(ctx, &result.Meta{TaskID: failed, Status: result.Failure,
		Result: protocol.NewException("ValueError", "boom"), Traceback: "tb", ReplyTo: oid}); err != nil {
		t.Fatal(err)
	}
	got := map[string]result.State{}
	if err := client.WaitReady(ctx, []string{id, failed, id}, func(m *result.Meta) { got[m.TaskID] = m.Status }); err != nil {
		t.Fatal(err)
	}
	if got[id] != result.Success || got[failed] != result.Failure || len(got) != 2 {
		t.Errorf("WaitReady reported %v", got)
	}
	_, err = result.NewAsyncResult(failed, client).Get(ctx, result.WithTimeout(10*time.Second))
	var te *result.TaskError
	if !errors.As(err, &te) || te.Exception == nil || te.Exception.Type != "ValueError" {
		t.Errorf("Get of failed task = %v", err)
	}

	// An id this client never heard of stays PENDING: waiting times out.
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if err := client.WaitReady(short, []string{producer.NewID()}, func(*result.Meta) {}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitReady(unknown) = %v, want deadline exceeded", err)
	}

	if err := client.Forget(ctx, id); err != nil {
		t.Fatal(err)
	}
	if m, _ := client.Get(ctx, id); m.Status != result.Pending {
		t.Errorf("after Forget: %s", m.Status)
	}

	g := result.NewGroupResult("g1", client, r)
	if err := g.Save(ctx); !errors.Is(err, rpcbackend.ErrNotSupported) {
		t.Errorf("GroupResult.Save = %v, want ErrNotSupported", err)
	}
	if _, err := result.RestoreGroup(ctx, client, "g1"); !errors.Is(err, rpcbackend.ErrNotSupported) {
		t.Errorf("RestoreGroup = %v, want ErrNotSupported", err)
	}
	if err := worker.WaitReady(ctx, []string{id}, func(*result.Meta) {}); !errors.Is(err, rpcbackend.ErrNoReplyQueue) {
		t.Errorf("worker-side WaitReady = %v", err)
	}

	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	if err := client.WaitReady(ctx, []string{id}, func(*result.Meta) {}); !errors.Is(err, rpcbackend.ErrClosed) {
		t.Errorf("WaitReady after Close = %v", err)
	}
}

func TestNewNeedsReplyTo(t *testing.T) {
	if _, err := rpcbackend.New(context.Background(), nil, rpcbackend.Options{}); err == nil {
		t.Fatal("New without ReplyTo succeeded")
	}
	if err := rpcbackend.NewWorkerSide(nil).Store(context.Background(), nil); err == nil {
		t.Fatal("Store(nil) succeeded")
	}
}

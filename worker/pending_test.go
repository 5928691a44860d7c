package worker_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gworker/gworker/gworkertest"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// With early ack, results finished while the result store is down are
// kept and stored once it is back, however long the outage; the ids still
// waiting at shutdown are named in the log.
func TestEarlyAckResultsSurviveStoreOutage(t *testing.T) {
	// The in-memory backend fails every call during an outage, as a Redis
	// backend does while its server is unreachable.
	rb := gworkertest.NewBackend()
	var runs atomic.Int64
	reg := worker.NewRegistry()
	if err := reg.Register("tasks.add", func(a, b int64) (int64, error) { runs.Add(1); return a + b, nil }); err != nil {
		t.Fatal(err)
	}
	e := newFakeEnv(t, reg, func(c *worker.Config) { c.Backend = rb; c.Concurrency = 4 })
	waitPending := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for e.worker.Stats().PendingResults != n {
			if time.Now().After(deadline) {
				t.Fatalf("%d results pending, want %d", e.worker.Stats().PendingResults, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	rb.SetOutage(true) // the outage starts
	const n = 3
	for i := 0; i < n; i++ {
		e.broker.deliver(taskRaw(t, "tasks.add", "outage-"+strconv.Itoa(i), int64(i), int64(10)), nil)
	}
	e.broker.waitSettled(t, n) // early acks
	// Each task gave up its quick retries: the outage outlasted them.
	waitPending(n)
	rb.SetOutage(false) // the store is back
	waitPending(0)
	for i := 0; i < n; i++ {
		m, err := rb.Get(context.Background(), "outage-"+strconv.Itoa(i))
		if err != nil || m.Status != result.Success {
			t.Fatalf("outage-%d: %+v %v", i, m, err)
		}
		if v, _ := m.Result.(int64); v != int64(i)+10 {
			t.Errorf("outage-%d: result %v", i, m.Result)
		}
	}
	if runs.Load() != n {
		t.Errorf("%d runs, want %d", runs.Load(), n)
	}

	// An outage that outlives the worker: the id is named at shutdown.
	rb.SetOutage(true)
	e.broker.deliver(taskRaw(t, "tasks.add", "given-up", int64(1), int64(1)), nil)
	e.broker.waitSettled(t, 1)
	waitPending(1)
	e.cancel()
	if err := <-e.done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	e.done <- nil // for the cleanup
	logged := e.logs.FilterMessage("results given up at shutdown: the result store did not come back").All()
	if len(logged) != 1 {
		t.Fatalf("%d shutdown lines naming given-up results", len(logged))
	}
	ids, _ := logged[0].ContextMap()["ids"].([]any)
	if len(ids) != 1 || ids[0] != "given-up" {
		t.Errorf("given-up ids logged: %v", logged[0].ContextMap())
	}
}

package worker

import (
	"reflect"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
)

// testInspector is an Inspector over parts the test fills by hand.
func testInspector(t *testing.T) *Inspector {
	t.Helper()
	log := zap.NewNop()
	b := &memBackend{}
	return &Inspector{
		pid:       9,
		active:    newActiveTasks("celery@h", 9),
		pool:      newPool(3, func(*job) {}, func(*job) {}),
		hold:      newHold(log, 12, 10, -1, 0, false, newRateLimits(), protocol.DecodeOptions{}, newHoldProbe().hooks()),
		consumers: newConsumers(newTestBroker(), log, []string{"a", "b"}, func(<-chan Delivery) {}),
		counts:    &counters{},
		results:   &resultWriter{backend: b, log: log},
		pending:   newPendingResults(b, 10, log),
	}
}

func TestInspectorDescribesWhereEachTaskIs(t *testing.T) {
	in := testInspector(t)
	running := testJob(t, "t.run", "running", nil, TaskOptions{})
	in.active.start(running)
	queued := testJob(t, "t.q", "queued", nil, TaskOptions{})
	in.pool.push(queued) // the pool is not started: it stays queued
	if err := in.hold.limits.set("t.lim", "1/h"); err != nil {
		t.Fatal(err)
	}
	in.hold.throttle(testJob(t, "t.lim", "first", nil, TaskOptions{}))
	throttled := testJob(t, "t.lim", "throttled", nil, TaskOptions{})
	in.hold.throttle(throttled)
	later, sooner := testJob(t, "t.eta", "later", nil, TaskOptions{}), testJob(t, "t.eta", "sooner", nil, TaskOptions{})
	for i, j := range []*job{later, sooner} {
		eta := time.Now().Add(time.Duration(2-i) * time.Hour)
		j.msg.ETA = &eta
		in.hold.eta(j, time.Until(eta), false)
	}
	defer in.hold.close()

	if act := in.Active(); len(act) != 1 || act[0].ID != "running" || act[0].WorkerPID != 9 || in.ActiveCount() != 1 {
		t.Errorf("active %+v", act)
	}
	var reserved []string
	for _, ti := range in.Reserved() {
		reserved = append(reserved, ti.ID)
	}
	if !reflect.DeepEqual(reserved, []string{"queued", "throttled"}) {
		t.Errorf("reserved %v", reserved)
	}
	sched := in.Scheduled()
	if len(sched) != 2 || sched[0].Request.ID != "sooner" || sched[1].Request.ID != "later" || sched[0].Priority != ScheduledPriority {
		t.Errorf("scheduled %+v, want the soonest first", sched)
	}
	states := in.QueryTasks("running", "queued", "throttled", "later", "unknown")
	want := map[string]string{"running": "active", "queued": "reserved", "throttled": "reserved", "later": "scheduled"}
	got := map[string]string{}
	for id, st := range states {
		got[id] = st.State
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("states %v, want %v", got, want)
	}
}

func TestInspectorCounts(t *testing.T) {
	in := testInspector(t)
	for _, name := range []string{"t.a", "t.a", "t.b"} {
		j := testJob(t, name, name, nil, TaskOptions{})
		in.active.start(j)
		in.active.end(j)
	}
	in.counts.received.Add(3)
	in.counts.succeeded.Add(2)
	in.results.retries.Add(4)
	in.pending.keep(in.results.meta(testJob(t, "t", "p", nil, TaskOptions{}).msg, "SUCCESS", nil, "", nil))
	if st := in.Stats(); st.Received != 3 || st.Succeeded != 2 || st.StoreRetries != 4 || st.PendingResults != 1 {
		t.Errorf("stats %+v", st)
	}
	if in.Processed() != 3 || !reflect.DeepEqual(in.Totals(), map[string]int64{"t.a": 2, "t.b": 1}) {
		t.Errorf("processed %d, totals %v", in.Processed(), in.Totals())
	}
	if in.Concurrency() != 3 || in.Prefetch() != 12 || in.PID() != 9 || !reflect.DeepEqual(in.Queues(), []string{"a", "b"}) {
		t.Errorf("concurrency %d, prefetch %d, pid %d, queues %v", in.Concurrency(), in.Prefetch(), in.PID(), in.Queues())
	}
}

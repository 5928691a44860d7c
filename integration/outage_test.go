package integration

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gworker/gworker/gworkertest"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
	"github.com/gworker/gworker/worker"
)

// With early ack, results finished while the real Redis result store is
// down are kept and stored once it is back, however long the outage; the
// ids still waiting at shutdown are named in the log. (worker/ checks the
// same against gworkertest's backend; this is the real server, go-redis's
// errors and reconnection included.)
func TestWorkerKeepsResultsThroughARedisOutage(t *testing.T) {
	rs := startPrivateRedis(t, outageRedisPort)
	rb, err := redisbackend.Open(rs.url(), redisbackend.Options{Expires: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-in first-out: this one after the worker stopped.
	t.Cleanup(func() { closeRedisBackend(t, rb) })
	var runs atomic.Int64
	reg := worker.NewRegistry()
	if err := reg.Register("tasks.add", func(a, b int64) (int64, error) { runs.Add(1); return a + b, nil }); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	broker := gworkertest.NewBroker()
	defer broker.Close()
	w, err := worker.New(worker.Config{Registry: reg, Broker: broker, Backend: rb, Queues: []string{"q"},
		Concurrency: 4, Hostname: "celery@outage", DisableFollowups: true, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deliver := func(id string, a, b int64) {
		t.Helper()
		raw, err := protocol.Encode(&protocol.Message{ID: id, Task: "tasks.add", Args: []any{a, b}, Kwargs: map[string]any{}}, protocol.EncodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := broker.Publish(context.Background(), "", "q", raw); err != nil {
			t.Fatal(err)
		}
	}
	acked := func() { // early acks: the queue empties before the results are stored
		t.Helper()
		wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer wcancel()
		if err := broker.WaitEmpty(wctx, "q"); err != nil {
			t.Fatal(err)
		}
	}
	waitPending := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for w.Stats().PendingResults != n {
			if time.Now().After(deadline) {
				t.Fatalf("%d results pending, want %d", w.Stats().PendingResults, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	rs.stop() // the outage starts
	const n = 3
	for i := 0; i < n; i++ {
		deliver("outage-"+strconv.Itoa(i), int64(i), 10)
	}
	acked()
	// Each task gave up its quick retries: the outage outlasted them.
	waitPending(n)
	rs.start() // the store is back
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
	rs.stop()
	deliver("given-up", 1, 1)
	acked()
	waitPending(1)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	logged := logs.FilterMessage("results given up at shutdown: the result store did not come back").All()
	if len(logged) != 1 {
		t.Fatalf("%d shutdown lines naming given-up results", len(logged))
	}
	ids, _ := logged[0].ContextMap()["ids"].([]any)
	if len(ids) != 1 || ids[0] != "given-up" {
		t.Errorf("given-up ids logged: %v", logged[0].ContextMap())
	}
}

// outageRedisPort is the private Redis of TestWorkerKeepsResultsThroughARedisOutage
// (never the shared one): the test stops and restarts it.
const outageRedisPort = 6421

// privateRedis is a redis-server the test owns, on a loopback port.
type privateRedis struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
	exit chan struct{}
}

func startPrivateRedis(t *testing.T, port int) *privateRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is required (.ci/run installs it): %v", err)
	}
	r := &privateRedis{t: t, port: port, dir: t.TempDir()}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *privateRedis) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir)
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	exit := make(chan struct{})
	r.exit = exit
	cmd := r.cmd
	go func() { _ = cmd.Wait(); close(exit) }()
	b, err := redisbackend.Open(r.url(), redisbackend.Options{})
	if err != nil {
		r.t.Fatal(err)
	}
	defer b.Close()
	deadline := time.Now().Add(30 * time.Second)
	for b.Client().Ping(context.Background()).Err() != nil {
		select {
		case <-exit:
			r.t.Fatalf("redis-server on port %d exited (port taken?)", r.port)
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on port %d did not answer", r.port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *privateRedis) stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.exit
	r.cmd = nil
}

func (r *privateRedis) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

// closeRedisBackend closes b and waits for the dial retries go-redis left
// sleeping after failed dials, so that goleak finds them gone.
func closeRedisBackend(t *testing.T, b *redisbackend.Backend) {
	t.Helper()
	if err := b.Close(); err != nil {
		t.Errorf("close backend: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if !strings.Contains(string(buf[:n]), "pool.(*ConnPool).tryDial") {
			return
		}
		if time.Now().After(deadline) {
			t.Error("go-redis dial retries still running 30 s after Close")
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

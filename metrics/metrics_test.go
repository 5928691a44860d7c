package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gworker/gworker/gworkertest"
	"github.com/gworker/gworker/metrics"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type countSink struct{ n atomic.Int64 }

func (c *countSink) TaskEvent(*worker.TaskEvent) { c.n.Add(1) }

func TestScrapeAndProbes(t *testing.T) {
	next := &countSink{}
	var readyErr error
	m := metrics.New(metrics.Config{Next: next, BrokerReconnects: func() uint64 { return 3 }, StaleAcks: func() int64 { return 2 },
		EventsDropped: func() int64 { return 7 }, Ready: func(context.Context) error { return readyErr },
		ReadyCache: time.Nanosecond})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	if code, body := get(t, srv, "/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("healthz %d %q", code, body)
	}
	if code, _ := get(t, srv, "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz without a worker: %d", code)
	}

	reg := worker.NewRegistry()
	reg.MustRegister("tasks.add", func(a, b int64) int64 { return a + b })
	reg.MustRegister("tasks.fail", func() (any, error) { return nil, errors.New("no") })
	env := gworkertest.NewEnv(t, gworkertest.Config{Registry: reg, Worker: worker.Config{Events: m}})
	ctx := context.Background()
	if err := env.Start(ctx); err != nil {
		t.Fatal(err)
	}
	m.SetWorker(env.Worker())
	for _, c := range []struct {
		name string
		args []any
	}{{"tasks.add", []any{1, 2}}, {"tasks.add", []any{3, 4}}, {"tasks.fail", nil}, {"tasks.nobody-has-this", nil}} {
		r, err := env.SendTask(ctx, c.name, c.args, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Wait(ctx, r.ID()); err != nil {
			t.Fatal(err)
		}
	}
	if code, body := get(t, srv, "/readyz"); code != 200 {
		t.Fatalf("readyz %d %s", code, body)
	}
	readyErr = errors.New("broker unreachable")
	if code, body := get(t, srv, "/readyz"); code != 503 || !strings.Contains(body, "broker unreachable") {
		t.Fatalf("readyz with a failing check: %d %s", code, body)
	}
	// A task's event reaches the metrics just after its result is stored,
	// so scrape until the last one is counted.
	wants := []string{
		`gworker_tasks_total{state="SUCCESS",task="tasks.add"} 2`,
		`gworker_tasks_total{state="FAILURE",task="tasks.fail"} 1`,
		`gworker_task_runtime_seconds_count{state="SUCCESS",task="tasks.add"} 2`,
		`gworker_task_runtime_seconds_count{state="FAILURE",task="tasks.fail"} 1`,
		`gworker_tasks_received_total{task="tasks.add"} 2`,
		`gworker_tasks_received_total{task="tasks.fail"} 1`,
		`gworker_tasks_total{state="FAILURE",task="unregistered"} 1`,
		`gworker_build_info{goversion="go`,
		`gworker_tasks_active 0`,
		`gworker_tasks_held_eta 0`,
		`gworker_tasks_reserved 0`,
		`gworker_broker_reconnects_total 3`,
		`gworker_stale_acks_dropped_total 2`,
		`gworker_events_dropped_total 7`,
		`gworker_result_store_retries_total 0`,
		`go_goroutines`,
	}
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, body = get(t, srv, "/metrics")
		missing := 0
		for _, want := range wants {
			if !strings.Contains(body, want) {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range wants {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "nobody-has-this") {
		t.Error("an unregistered task name got a series of its own")
	}
	if next.n.Load() == 0 {
		t.Error("events were not passed on")
	}
}

// Probes in a tight loop cost the broker one readiness check per
// ReadyCache, not one each (a channel was opened per /readyz).
func TestReadinessIsCached(t *testing.T) {
	var checks atomic.Int64
	m := metrics.New(metrics.Config{Ready: func(context.Context) error { checks.Add(1); return nil }, ReadyCache: time.Hour})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	reg := worker.NewRegistry()
	env := gworkertest.NewEnv(t, gworkertest.Config{Registry: reg})
	if err := env.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.SetWorker(env.Worker())
	for range 20 {
		if code, body := get(t, srv, "/readyz"); code != 200 {
			t.Fatalf("readyz %d %s", code, body)
		}
	}
	if n := checks.Load(); n != 1 {
		t.Errorf("%d readiness checks for 20 probes, want 1", n)
	}
}

func TestServe(t *testing.T) {
	m := metrics.New(metrics.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	addr, err := m.Serve(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
	cancel()
	// The server goroutines end with ctx.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := http.Get("http://" + addr.String() + "/healthz"); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("server still answers after ctx ended")
}

// value returns the value of the series line that starts with series in
// a /metrics body, or -1.
func value(body, series string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}

// scrapeUntil scrapes /metrics until every series has its value.
func scrapeUntil(t *testing.T, srv *httptest.Server, want map[string]float64) string {
	t.Helper()
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, body = get(t, srv, "/metrics")
		ok := true
		for s, v := range want {
			if value(body, s) != v {
				ok = false
			}
		}
		if ok {
			return body
		}
		if time.Now().After(deadline) {
			for s, v := range want {
				if got := value(body, s); got != v {
					t.Errorf("%s = %v, want %v", s, got, v)
				}
			}
			t.FailNow()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestQueueWaitLatencyAndLoadByQueue(t *testing.T) {
	m := metrics.New(metrics.Config{})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	release := make(chan struct{})
	reg := worker.NewRegistry()
	reg.MustRegister("tasks.block", func() int { <-release; return 0 })
	reg.MustRegister("tasks.add", func(a, b int64) int64 { return a + b })
	env := gworkertest.NewEnv(t, gworkertest.Config{Registry: reg, Queue: "mq",
		Worker: worker.Config{Events: m, Concurrency: 1}})
	ctx := context.Background()
	if err := env.Start(ctx); err != nil {
		t.Fatal(err)
	}
	m.SetWorker(env.Worker())
	send := func(name string, args []any, opts ...producer.Option) string {
		r, err := env.SendTask(ctx, name, args, nil, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return r.ID()
	}
	block := send("tasks.block", nil)
	adds := []string{send("tasks.add", []any{1, 2}), send("tasks.add", []any{3, 4})}
	send("tasks.add", []any{5, 6}, producer.Countdown(time.Hour))
	scrapeUntil(t, srv, map[string]float64{
		`gworker_queue_tasks{queue="mq",state="active"}`:   1,
		`gworker_queue_tasks{queue="mq",state="reserved"}`: 2,
		`gworker_queue_tasks{queue="mq",state="held"}`:     1,
		`gworker_pool_free_slots`:                          0,
	})
	// The two adds wait behind the blocking task for at least this long.
	time.Sleep(200 * time.Millisecond)
	close(release)
	for _, id := range append(adds, block) {
		if _, err := env.Wait(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	body := scrapeUntil(t, srv, map[string]float64{
		`gworker_task_queue_wait_seconds_count{queue="mq"}`:                 3,
		`gworker_task_latency_seconds_count{queue="mq",task="tasks.add"}`:   2,
		`gworker_task_latency_seconds_count{queue="mq",task="tasks.block"}`: 1,
		`gworker_queue_tasks{queue="mq",state="active"}`:                    0,
		`gworker_queue_tasks{queue="mq",state="reserved"}`:                  0,
		`gworker_pool_free_slots`:                                           1,
	})
	if n := value(body, `gworker_task_queue_wait_seconds_bucket{queue="mq",le="0.1"}`); n > 1 {
		t.Errorf("%v tasks waited under 0.1 s; the adds waited 0.2 s at least", n)
	}
	if s := value(body, `gworker_task_latency_seconds_sum{queue="mq",task="tasks.add"}`); s < 0.4 {
		t.Errorf("latency sum of the adds %v s, want 0.4 s at least", s)
	}
}

package deploy_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gworker/gworker/gworkertest"
	"github.com/gworker/gworker/metrics"
	"github.com/gworker/gworker/worker"
)

var metricName = regexp.MustCompile(`gworker_[a-z_]+`)

// scrape runs a worker with metrics on the in-memory broker, runs a task,
// and returns what /metrics serves.
func scrape(t *testing.T) string {
	t.Helper()
	m := metrics.New(metrics.Config{BrokerReconnects: func() uint64 { return 0 }, StaleAcks: func() int64 { return 0 },
		EventsDropped: func() int64 { return 0 }})
	reg := worker.NewRegistry()
	reg.MustRegister("tasks.add", func(a, b int64) int64 { return a + b })
	env := gworkertest.NewEnv(t, gworkertest.Config{Registry: reg, Worker: worker.Config{Events: m}})
	ctx := context.Background()
	if err := env.Start(ctx); err != nil {
		t.Fatal(err)
	}
	m.SetWorker(env.Worker())
	r, err := env.SendTask(ctx, "tasks.add", []any{1, 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Wait(ctx, r.ID()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	// The task's event reaches the metrics just after its result is
	// stored: scrape until its runtime is counted.
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := srv.Client().Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		body = string(b)
		if strings.Contains(body, "gworker_task_runtime_seconds_bucket") || time.Now().After(deadline) {
			return body
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkNames fails for every gworker_ metric an expression names that the
// worker does not serve.
func checkNames(t *testing.T, where string, exprs []string, served string) {
	t.Helper()
	seen := map[string]bool{}
	for _, e := range exprs {
		for _, n := range metricName.FindAllString(e, -1) {
			seen[n] = true
		}
	}
	if len(seen) == 0 {
		t.Fatalf("%s names no gworker metric", where)
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !regexp.MustCompile(`(?m)^` + n + `[{ ]`).MatchString(served) {
			t.Errorf("%s uses %s, which the worker does not serve", where, n)
		}
	}
}

// Every query of the Grafana dashboard names metrics the worker serves.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/gworker-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			exprs = append(exprs, q.Expr)
		}
	}
	checkNames(t, "the dashboard", exprs, scrape(t))
}

// Every alert has an expression on metrics the worker serves, a severity
// and a summary.
func TestPrometheusAlerts(t *testing.T) {
	d := docs(t, "prometheus/gworker-alerts.yaml")
	if len(d) != 1 {
		t.Fatalf("want one document, got %d", len(d))
	}
	var exprs []string
	for _, g := range at(t, d[0], "groups").([]any) {
		for _, r := range at(t, g, "rules").([]any) {
			name := at(t, r, "alert")
			expr, _ := at(t, r, "expr").(string)
			if expr == "" || at(t, r, "labels", "severity") == nil || at(t, r, "annotations", "summary") == nil {
				t.Errorf("alert %v lacks an expr, a severity or a summary", name)
			}
			exprs = append(exprs, expr)
		}
	}
	checkNames(t, "the alert rules", exprs, scrape(t))
}

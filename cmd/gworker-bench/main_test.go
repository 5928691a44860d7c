package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The bench runs the minimal loop by executing itself; under test,
	// itself is the test binary.
	if len(os.Args) > 1 && os.Args[1] == "minloop" {
		os.Exit(runMinLoop(os.Args[2:], os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "bare-ack" {
		os.Exit(runBareAck(os.Args[2:], os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

// TestBenchSmall runs the whole bench in its smallest form (gworker and
// the minimal loop, 200 tasks, one round, both modes) against the real
// RabbitMQ and Redis, so that the command keeps working. It asserts that
// every run succeeded and was reported, never on speed.
func TestBenchSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"-n", "200", "-rounds", "1", "-workers", "gworker,minloop", "-timeout", "60s"}, &out, &errb)
	t.Log(out.String())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{
		"prefill gworker", "prefill minloop", "e2e     gworker", "e2e     minloop",
		"summary:", "gworker/minloop tasks/s", "gworker peak RSS",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "FAILED") {
		t.Error("a run failed")
	}
}

// TestBenchBareAckAndLatency runs the ceiling (bare-ack) in the prefill
// mode and gworker and the minimal loop in latency mode (one Python
// client), in their smallest forms, so that both keep working. Only that
// the runs succeeded and were reported is asserted.
func TestBenchBareAckAndLatency(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("latency mode needs Celery's Python")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"-n", "200", "-rounds", "1", "-workers", "gworker,bare-ack,minloop", "-modes", "prefill,latency",
		"-latency-n", "20", "-latency-warmup", "2", "-timeout", "60s"}, &out, &errb)
	t.Log(out.String())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{
		"prefill bare-ack", "latency gworker", "latency minloop", "round trip p50",
		"gworker/bare-ack tasks/s", "gworker/minloop round-trip p50",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "latency bare-ack") || strings.Contains(out.String(), "FAILED") {
		t.Error("bare-ack ran in latency mode, or a run failed")
	}
}

// TestBenchLatencyInterleaved runs latency mode with -latency-interleave
// in its smallest form: gworker and the minimal loop at once, one client
// calling each in turn. The client checks that every queue got its round
// trips; both workers must be reported from the one run.
func TestBenchLatencyInterleaved(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("latency mode needs Celery's Python")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	js := filepath.Join(t.TempDir(), "runs.json")
	code := run(ctx, []string{"-rounds", "1", "-workers", "gworker,minloop", "-modes", "latency", "-latency-interleave",
		"-latency-n", "20", "-latency-warmup", "2", "-timeout", "60s", "-json", js}, &out, &errb)
	t.Log(out.String())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var runs []sample
	if err := json.Unmarshal(b, &runs); err != nil {
		t.Fatal(err)
	}
	got := map[string]sample{}
	for _, s := range runs {
		got[s.Worker] = s
	}
	for _, w := range []string{"gworker", "minloop"} {
		s, ok := got[w]
		if !ok || s.Err != "" || s.Mode != "latency" || s.Tasks != 20 || s.P50us <= 0 || s.RSSMB <= 0 {
			t.Errorf("%s: %+v", w, s)
		}
	}
	if len(runs) != 2 || !strings.Contains(out.String(), "gworker/minloop round-trip p50") {
		t.Errorf("%d runs reported, or no ratio", len(runs))
	}
}

func TestPercentile(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for _, c := range []struct{ p, want float64 }{{50, 5}, {90, 9}, {99, 10}, {100, 10}, {1, 1}} {
		if got := percentile(v, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("empty")
	}
}

func TestParseFlags(t *testing.T) {
	var errb bytes.Buffer
	for _, args := range [][]string{
		{"-workers", "gworker,rq"},
		{"-modes", "burst"},
		{"-n", "0"},
		{"extra"},
		{"-transport", "redis", "-modes", "latency"},
		{"-latency-n", "0"},
	} {
		if _, err := parseFlags(args, &errb); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
	o, err := parseFlags([]string{"-workers", " minloop , celery ", "-modes", "e2e"}, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.workers, "|") != "minloop|celery" || strings.Join(o.modes, "|") != "e2e" {
		t.Errorf("workers %q modes %q", o.workers, o.modes)
	}
}

func TestSummarize(t *testing.T) {
	if s := summarize([]float64{3, 1, 2}); s != (stats{1, 2, 3}) {
		t.Errorf("odd: %+v", s)
	}
	if s := summarize([]float64{4, 1, 2, 3}); s != (stats{1, 2.5, 4}) {
		t.Errorf("even: %+v", s)
	}
	if s := summarize(nil); s != (stats{}) {
		t.Errorf("empty: %+v", s)
	}
}

func TestProcReadsSelf(t *testing.T) {
	pid := os.Getpid()
	if _, err := readStat(pid); err != nil {
		t.Fatal(err)
	}
	if treeRSS(pid) <= 0 {
		t.Error("no RSS for this process")
	}
	if got := tree(pid); len(got) == 0 || got[0] != pid {
		t.Errorf("tree %v", got)
	}
	if findProcess("no-such-process-name") != 0 {
		t.Error("found a process that does not exist")
	}
	if _, err := readStat(-1); err == nil {
		t.Error("no error for a missing process")
	}
}

func TestMinLoopBadFlags(t *testing.T) {
	var errb bytes.Buffer
	if code := runMinLoop([]string{"-nope"}, &errb); code != 2 {
		t.Errorf("exit %d", code)
	}
	if code := runBareAck([]string{"-nope"}, &errb); code != 2 {
		t.Errorf("bare-ack: exit %d", code)
	}
	if code := runBareAck([]string{"-queue", "q"}, &errb); code != 2 {
		t.Errorf("bare-ack without -n and -notify: exit %d", code)
	}
}

// TestBenchRedisSmall runs the Redis-broker mode in its smallest form with
// gworker and the minimal loop, so that the mode keeps working.
func TestBenchRedisSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"-transport", "redis", "-n", "200", "-rounds", "1", "-workers", "gworker,minloop", "-timeout", "60s"}, &out, &errb)
	t.Log(out.String())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "prefill minloop") || !strings.Contains(out.String(), "prefill gworker") || strings.Contains(out.String(), "FAILED") {
		t.Error("the run did not succeed")
	}
}

// TestHeldSmall runs the held mode in a small form (100 countdown tasks in
// two steps) against the real RabbitMQ, so that it keeps working: the
// worker must reach every step and the slope be reported. Nothing is
// asserted on the figures.
func TestHeldSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var out, errb bytes.Buffer
	code := runHeld(ctx, []string{"-steps", "50,100", "-settle", "100ms", "-metrics-addr", addr, "-timeout", "2m"}, &out, &errb)
	t.Log(out.String())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"     0 held", "    50 held", "   100 held", "KB RSS per held task"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestHeldFlags(t *testing.T) {
	for _, steps := range []string{"10,5", "0,10", "a", ""} {
		if _, err := parseHeldFlags([]string{"-steps", steps}, io.Discard); err == nil {
			t.Errorf("-steps %q accepted", steps)
		}
	}
	o, err := parseHeldFlags(nil, io.Discard)
	if err != nil || !slices.Equal(o.steps, []int{1000, 5000, 10000, 20000}) {
		t.Errorf("defaults: %+v, %v", o, err)
	}
}

// The server measured is the one listening on the run's port, not the
// busiest process of that name.
func TestListenerPIDFindsTheListeningProcess(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp here")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if got := listenerPID(port); got != os.Getpid() {
		t.Fatalf("listenerPID(%d) = %d, want this process %d", port, got, os.Getpid())
	}
	ln.Close()
	if got := listenerPID(port); got != 0 {
		t.Fatalf("listenerPID(%d) after close = %d, want 0", port, got)
	}
	if got := amqpAddr("amqp://guest:guest@127.0.0.1"); got != "127.0.0.1:5672" {
		t.Errorf("amqpAddr without a port: %q", got)
	}
}

func TestPerRound(t *testing.T) {
	samples := []sample{
		{Round: 1, Mode: "prefill", Worker: "gworker", TasksPerS: 900},
		{Round: 1, Mode: "prefill", Worker: "bare-ack", TasksPerS: 1000},
		{Round: 2, Mode: "prefill", Worker: "bare-ack", TasksPerS: 2000},
		{Round: 2, Mode: "prefill", Worker: "gworker", TasksPerS: 1000},
		{Round: 3, Mode: "prefill", Worker: "gworker", TasksPerS: 1100},
		{Round: 3, Mode: "prefill", Worker: "bare-ack", TasksPerS: 1000},
		{Round: 4, Mode: "prefill", Worker: "gworker", TasksPerS: 1000}, // no partner
		{Round: 4, Mode: "prefill", Worker: "bare-ack", Err: "failed"},  // skipped
		{Round: 1, Mode: "e2e", Worker: "bare-ack", TasksPerS: 1},       // another mode
		{Round: 1, Mode: "prefill", Worker: "minloop", TasksPerS: 1},    // another worker
	}
	want := " [per round 0.90, 0.50, 1.10: median 0.90×]"
	if got := perRound(samples, "prefill", "gworker", "bare-ack"); got != want {
		t.Errorf("perRound = %q, want %q", got, want)
	}
	if got := perRound(samples[:2], "prefill", "gworker", "bare-ack"); got != "" {
		t.Errorf("one round: %q, want nothing", got)
	}
}

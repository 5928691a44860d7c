package gworker_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/gworker/gworker"
)

// freeAddr returns a loopback address nothing listens on yet.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// probe returns the status code of GET path, or 0 when nothing answers.
func probe(addr, path string) int {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// waitProbe waits until GET path answers want.
func waitProbe(t *testing.T, addr, path string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for probe(addr, path) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered %d (last %d)", path, want, probe(addr, path))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// While the broker cannot be reached, the probes already answer: liveness
// 200 (the process is sound; a pod must not be restarted for a broker
// outage), readiness 503.
func TestProbesAnswerWhileTheBrokerIsDown(t *testing.T) {
	addr := freeAddr(t)
	down := freeAddr(t) // nothing listens there
	app, err := gworker.NewApp(gworker.Config{BrokerURL: "amqp://guest:guest@" + down + "//", MetricsAddr: addr,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan error, 1)
	go func() { started <- app.Start(ctx) }()
	waitProbe(t, addr, "/healthz", http.StatusOK)
	if code := probe(addr, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while connecting: %d", code)
	}
	cancel()
	if err := <-started; err == nil {
		t.Fatal("Start succeeded without a broker")
	}
	if code := probe(addr, "/healthz"); code != 0 {
		t.Errorf("the probes still answer (%d) after a failed Start", code)
	}
}

// During a warm shutdown the node leaves service: readiness 503 at once,
// liveness 200 until the running task has finished and the worker
// stopped; then the server closes.
func TestProbesDuringADrain(t *testing.T) {
	addr := freeAddr(t)
	app, _ := newTestApp(t, gworker.Config{MetricsAddr: addr, Concurrency: 1})
	running, release := make(chan struct{}), make(chan struct{})
	app.MustRegister("t.slow", func(ctx context.Context) (string, error) {
		close(running)
		<-release
		return "ok", nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitProbe(t, addr, "/readyz", http.StatusOK)
	if _, err := app.SendTask(ctx, "t.slow", nil, nil); err != nil {
		t.Fatal(err)
	}
	<-running
	stopped := make(chan error, 1)
	go func() { stopped <- app.Stop(ctx) }()
	waitProbe(t, addr, "/readyz", http.StatusServiceUnavailable)
	for i := range 3 {
		if code := probe(addr, "/healthz"); code != http.StatusOK {
			t.Fatalf("/healthz during the drain (%d): %d", i, code)
		}
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if code := probe(addr, "/healthz"); code != 0 {
		t.Errorf("the probes still answer (%s) after the worker stopped", fmt.Sprint(code))
	}
}

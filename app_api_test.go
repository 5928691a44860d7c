package gworker_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker"
	"github.com/gworker/gworker/control"
	"github.com/gworker/gworker/internal/testing/testenv"
)

// Configure replaces the Config of an App not yet connected and keeps its
// tasks; a refused Config changes nothing; a connected App keeps its own.
func TestConfigure(t *testing.T) {
	app := gworker.New(gworker.Config{})
	app.MustRegister("t.kept", func() int { return 1 })
	before := app.Config()
	for _, bad := range []gworker.Config{{BrokerURL: "kafka://h"}, {RateLimits: map[string]string{"t.kept": "fast"}}} {
		if err := app.Configure(bad); !errors.Is(err, gworker.ErrInvalidConfig) {
			t.Errorf("Configure(%+v) = %v, want ErrInvalidConfig", bad, err)
		}
	}
	if !slices.Equal(app.Config().Queues, before.Queues) || app.Config().BrokerURL != before.BrokerURL {
		t.Errorf("a refused Config changed the App: %+v", app.Config())
	}
	queue := "gworker.configure.test." + testenv.Suffix()
	if err := app.Configure(gworker.Config{BrokerURL: testenv.AMQPURL(), Queues: []string{queue}, Logger: zap.NewNop()}); err != nil {
		t.Fatal(err)
	}
	if c := app.Config(); !slices.Equal(c.Queues, []string{queue}) || c.DefaultQueue != gworker.DefaultQueue || c.PrefetchMultiplier != gworker.DefaultPrefetchMultiplier {
		t.Errorf("Configure did not set and default the Config: %+v", c)
	}
	if _, err := app.Registry().Lookup("t.kept"); err != nil {
		t.Errorf("Configure lost a registered task: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := app.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := app.Configure(gworker.Config{}); !errors.Is(err, gworker.ErrConnected) {
		t.Errorf("Configure on a connected App: %v, want ErrConnected", err)
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	if err := app.Configure(gworker.Config{Logger: zap.NewNop()}); err != nil {
		t.Errorf("Configure after Close: %v", err)
	}
}

// Control reaches a started node on the broker: it answers a ping sent to
// its name.
func TestControlPingsANode(t *testing.T) {
	node := "gworker-control-test-" + testenv.Suffix() + "@%h"
	app, _ := newTestApp(t, gworker.Config{Concurrency: 1, Hostname: node})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer app.Stop(ctx)
	client, _ := newTestApp(t, gworker.Config{})
	defer client.Close()
	c, err := client.Control(ctx)
	if err != nil {
		t.Fatal(err)
	}
	replies, err := c.Broadcast(ctx, "ping", nil, control.BroadcastOptions{Reply: true, Timeout: 30 * time.Second,
		Destination: []string{app.Hostname()}})
	if err != nil || len(replies) != 1 || replies[0].Node != app.Hostname() {
		t.Fatalf("ping %s: %v, %v", app.Hostname(), replies, err)
	}
}

// ColdShutdown cancels the tasks a warm shutdown waits for.
func TestColdShutdownCancelsRunningTasks(t *testing.T) {
	app, _ := newTestApp(t, gworker.Config{Concurrency: 1})
	started := make(chan struct{})
	cancelled := make(chan struct{})
	app.MustRegister("t.block", func(ctx context.Context) (string, error) {
		close(started)
		<-ctx.Done()
		close(cancelled)
		return "", ctx.Err()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	app.ColdShutdown() // before Start: nothing to do
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := app.SendTask(ctx, "t.block", nil, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the task never started")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- app.Stop(context.Background()) }() // warm: waits for the task
	app.ColdShutdown()
	select {
	case <-cancelled:
	case <-ctx.Done():
		t.Fatal("ColdShutdown did not cancel the running task")
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Stop after a cold shutdown: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Stop never returned")
	}
}

package gworker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gworker/gworker"
	"github.com/gworker/gworker/control"
	"github.com/gworker/gworker/internal/testing/testenv"
)

// `celery inspect conf` shows the node's effective settings under Celery's
// names, passwords masked, rather than {}.
func TestInspectConfShowsTheSettings(t *testing.T) {
	node := "gw-conf-" + testenv.Suffix() + "@test"
	app, queue := newTestApp(t, gworker.Config{Hostname: node, Concurrency: 3, AcksLate: true,
		RateLimits: map[string]string{"t.x": "10/s"}, SoftShutdownTimeout: 1500 * time.Millisecond,
		EnableSoftShutdownOnIdle: true})
	app.MustRegister("t.x", func() {})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer app.Stop(ctx)
	client, err := app.Control(ctx)
	if err != nil {
		t.Fatal(err)
	}
	replies, err := client.Broadcast(ctx, "conf", nil, control.BroadcastOptions{Reply: true, Destination: []string{node}, Timeout: 10 * time.Second})
	if err != nil || len(replies) != 1 {
		t.Fatalf("conf: %v %v", replies, err)
	}
	conf, ok := replies[0].Value.(map[string]any)
	if !ok {
		t.Fatalf("conf reply %T %v", replies[0].Value, replies[0].Value)
	}
	for key, want := range map[string]any{
		"worker_concurrency": int64(3), "task_acks_late": true, "task_default_queue": queue, "worker_hostname": node,
		"worker_soft_shutdown_timeout": 1.5, "worker_enable_soft_shutdown_on_idle": true,
		"enable_utc": true, "timezone": "UTC", "worker_hijack_root_logger": false, "worker_log_color": false,
	} {
		if conf[key] != want {
			t.Errorf("%s = %v, want %v", key, conf[key], want)
		}
	}
	for _, key := range []string{"deprecated_settings", "include", "accept_content", "broker_heartbeat", "result_backend"} {
		if _, ok := conf[key]; !ok {
			t.Errorf("%s missing (every Celery node reports it)", key)
		}
	}
	if u, _ := conf["broker_url"].(string); !strings.HasPrefix(u, "amqp://") || (strings.Contains(testenv.AMQPURL(), ":guest@") && strings.Contains(u, ":guest@")) {
		t.Errorf("broker_url %q: missing or not masked", u)
	}
	if _, ok := conf["task_annotations"].(map[string]any)["t.x"]; !ok {
		t.Errorf("task_annotations %v", conf["task_annotations"])
	}
}

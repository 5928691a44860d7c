package gworker_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/gworker/gworker"
	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/result"
)

// TestRedisBroker: an App on redis:// (with a transport option) runs a task
// sent from Go and one sent by Celery 5.2.6, and answers celery inspect
// ping over the Redis pidbox.
func TestRedisBroker(t *testing.T) {
	prefix := "gwt-app-" + testenv.Suffix() + ":"
	rc := testenv.Redis(t)
	t.Cleanup(func() {
		keys, _ := rc.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			rc.Del(context.Background(), keys...)
		}
	})
	app, err := gworker.NewApp(gworker.Config{
		BrokerURL: testenv.RedisURL(), ResultBackend: testenv.RedisURL(), ResultExpires: time.Minute,
		BrokerTransportOptions: map[string]string{"global_keyprefix": prefix, "visibility_timeout": "600"},
		Queues:                 []string{"rq"}, DefaultQueue: "rq", Concurrency: 2, Hostname: "gwredis@test",
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
	})
	if err != nil {
		t.Fatal(err)
	}
	app.MustRegister("tasks.add", func(x, y int) int { return x + y })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer app.Stop(ctx)
	r, err := app.SendTask(ctx, "tasks.add", []any{2, 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Del(context.Background(), "celery-task-meta-"+r.ID())
	if v, err := r.Get(ctx, result.WithTimeout(30*time.Second)); err != nil || v != int64(5) {
		t.Fatalf("Go client: %v, %v", v, err)
	}
	script := `
import os
from celery import Celery
app = Celery('t', broker=os.environ['BROKER'], backend=os.environ['BROKER'])
app.conf.broker_transport_options = {'global_keyprefix': os.environ['PREFIX']}
r = app.send_task('tasks.add', (20, 22), queue='rq')
print('result', r.get(timeout=30))
r.forget()
print('ping', app.control.inspect(timeout=5, destination=['gwredis@test']).ping())
`
	cmd := exec.CommandContext(ctx, testenv.Python(), "-c", script)
	cmd.Env = append(os.Environ(), "BROKER="+testenv.RedisURL(), "PREFIX="+prefix)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "result 42") || !strings.Contains(string(out), "{'gwredis@test': {'ok': 'pong'}}") {
		t.Fatalf("python said:\n%s", out)
	}
}

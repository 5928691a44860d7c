//go:build unix

package redistransport_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/gworker/gworker/control"
	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/redistransport"
)

// TestPingCeleryWorker: the Go control client broadcasts ping over the
// Redis pidbox (pub/sub) and reads the Celery 5.2.6 worker's reply from its
// reply list, as celery inspect ping does.
func TestPingCeleryWorker(t *testing.T) {
	prefix := "gwt-ops-" + testenv.Suffix() + ":"
	rc := testenv.Redis(t)
	t.Cleanup(func() {
		keys, _ := rc.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			rc.Del(context.Background(), keys...)
		}
	})
	dir := t.TempDir()
	mod := "import os\nfrom celery import Celery\napp = Celery('opsapp', broker=os.environ['BROKER'])\n" +
		"app.conf.broker_transport_options = {'global_keyprefix': os.environ['PREFIX']}\n"
	if err := os.WriteFile(dir+"/opsapp.py", []byte(mod), 0o644); err != nil {
		t.Fatal(err)
	}
	node := "py-" + testenv.Suffix() + "@test"
	cmd := exec.Command(testenv.Python(), "-m", "celery", "-A", "opsapp", "worker", "-c", "1", "-n", node,
		"-Q", "opsq", "--without-mingle", "--without-gossip", "-l", "WARNING")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PYTHONPATH="+dir, "BROKER="+testenv.RedisURL(), "PREFIX="+prefix)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	log := zaptest.NewLogger(t)
	b, err := redistransport.Dial(ctx, redistransport.Config{URL: testenv.RedisURL(), Logger: log,
		TransportOptions: map[string]string{"global_keyprefix": prefix}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	client := control.NewClient(b, nil, log)
	// The worker takes a few seconds to start: ask until it answers.
	for {
		replies, err := client.Broadcast(ctx, "ping", nil, control.BroadcastOptions{Reply: true, Timeout: 2 * time.Second, Destination: []string{node}})
		if err != nil && !errors.Is(err, control.ErrNoReply) {
			t.Fatal(err)
		}
		if len(replies) == 1 {
			if got := fmt.Sprint(replies[0]); !strings.Contains(got, node) || !strings.Contains(got, "pong") {
				t.Fatalf("reply: %s", got)
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("no reply from the Celery worker:\n%s", out.String())
		}
	}
}

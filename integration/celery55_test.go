package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gworker/gworker/internal/testing/testenv"
)

// Helpers for the tests against Celery 5.5.3 (a producer, a worker and
// its command line), taken from testenv.Celery55Site.

// py55 is a Python client that runs Celery 5.5.3 on broker with conf.
func py55(t testing.TB, broker string, conf map[string]any) pyClient {
	t.Helper()
	return pyClient{Broker: broker, Conf: conf, Env: []string{"PYTHONPATH=" + testenv.Celery55Site(t)}}
}

// quorumTopicConf is the configuration of a Celery 5.5 app whose default
// queue q is a quorum queue of a topic exchange, as native delayed
// delivery needs it: Queue(q, Exchange(q, type='topic'), routing_key=q,
// queue_arguments={'x-queue-type': 'quorum'}).
func quorumTopicConf(q string) map[string]any {
	return map[string]any{
		"task_default_queue":         q,
		"task_default_queue_type":    "quorum",
		"task_default_exchange_type": "topic",
		"broker_transport_options":   map[string]any{"confirm_publish": true},
	}
}

// quorumTopicFlags are the gworker worker flags that declare q as
// quorumTopicConf does.
var quorumTopicFlags = []string{"--default-queue-type", "quorum", "--default-exchange-type", "topic"}

// startPy55Worker starts a Celery 5.5.3 worker (solo pool) on broker and
// queues with conf, and waits until it is ready.
func startPy55Worker(t testing.TB, broker string, conf map[string]any, queues ...string) *pyWorker {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pytasks.py"), []byte(pyTasksModule), 0o644); err != nil {
		t.Fatal(err)
	}
	confJSON, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	name := "py55-" + testenv.Suffix() + "@%h"
	cmd := exec.Command(testenv.Python(), "-m", "celery", "-A", "pytasks", "worker",
		"-P", "solo", "-Q", strings.Join(queues, ","), "-n", name, "-l", "DEBUG",
		"--without-mingle", "--without-gossip", "--without-heartbeat")
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "GW_BROKER="+broker, "GW_BACKEND="+backendURL,
		"GW_CONF="+string(confJSON), "PYTHONPATH="+dir+":"+testenv.Celery55Site(t), "PYTHONDONTWRITEBYTECODE=1")
	return runPyWorker(t, cmd, name, "celery 5.5 worker", 90*time.Second)
}

// celery55CLI runs Celery 5.5.3's command line with args and returns its
// output and exit error.
func celery55CLI(t testing.TB, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Python(), append([]string{"-m", "celery"}, args...)...)
	cmd.Env = append(cleanEnv(), "PYTHONPATH="+testenv.Celery55Site(t), "PYTHONDONTWRITEBYTECODE=1")
	cmd.Dir = env.tmp
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// dueTask is a task sent with a countdown or an ETA: its id and when it
// was due.
type dueTask struct {
	ID  string `json:"id"`
	ETA string `json:"eta"`
}

// sendDue55 is the Python that sends tasks.add with countdown n seconds,
// k times, and records each id with its eta, under key.
func sendDue55(key string, k int, countdown float64) string {
	return fmt.Sprintf(`
from datetime import datetime, timezone, timedelta
_due = []
for i in range(%d):
    eta = datetime.now(timezone.utc) + timedelta(seconds=%g)
    r = send('tasks.add', (i, 100), countdown=%g)
    _due.append({'id': r.id, 'eta': eta.isoformat()})
emit(%s=_due)
`, k, countdown, countdown, key)
}

// callDue sends tasks.add with gworker's call command, with a countdown of
// countdown seconds, and returns it.
func callDue(t testing.TB, broker, queue string, countdown float64, i int) dueTask {
	t.Helper()
	eta := time.Now().UTC().Add(time.Duration(countdown * float64(time.Second)))
	out, errOut, code := runGworker(t, 60*time.Second, "call", "tasks.add", "--broker", broker, "--result-backend", backendURL,
		"-Q", queue, "--args", fmt.Sprintf("[%d, 200]", i), "--countdown", fmt.Sprint(countdown))
	if code != 0 {
		t.Fatalf("gworker call: exit %d\n%s", code, errOut)
	}
	id := strings.TrimSpace(out)
	trackTasks(t, id)
	return dueTask{ID: id, ETA: eta.Format(time.RFC3339Nano)}
}

// dateDone returns the date_done of a stored result.
func dateDone(t testing.TB, id string) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := env.rdb.Get(ctx, "celery-task-meta-"+id).Bytes()
	if err != nil {
		t.Fatalf("result of %s: %v", id, err)
	}
	var m struct {
		DateDone string `json:"date_done"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("result of %s: %v", id, err)
	}
	return parseISO(t, m.DateDone)
}

// parseISO reads the ISO 8601 times Celery and gworker write (with or
// without an offset; none means UTC).
func parseISO(t testing.TB, s string) time.Time {
	t.Helper()
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05.999999999-07:00"} {
		if v, err := time.Parse(layout, s); err == nil {
			return v
		}
	}
	t.Fatalf("not an ISO 8601 time: %q", s)
	return time.Time{}
}

// ranOnceAfterETA waits for each task's SUCCESS and checks that it ran
// after its eta, and exactly once among the workers' logs.
func ranOnceAfterETA(t testing.TB, tasks []dueTask, workers ...*gworkerProc) {
	t.Helper()
	for _, d := range tasks {
		waitMeta(t, d.ID, 90*time.Second, "SUCCESS")
		if done, eta := dateDone(t, d.ID), parseISO(t, d.ETA); done.Before(eta) {
			t.Errorf("task %s finished at %v, before its eta %v", d.ID, done, eta)
		}
	}
	for _, d := range tasks {
		n := 0
		for _, w := range workers {
			n += strings.Count(w.log(), "["+d.ID+"] succeeded")
		}
		if n != 1 {
			t.Errorf("task %s ran %d times, want once", d.ID, n)
		}
	}
}

// queueMessages returns the messages rabbitmqctl counts in each queue of
// a vhost (ready and unacknowledged), through ctl.
func queueMessages(t testing.TB, ctl func(args ...string) ([]byte, error), vhost string) map[string]int {
	t.Helper()
	out, err := ctl("list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name", "messages")
	if err != nil {
		t.Fatalf("rabbitmqctl list_queues: %v\n%s", err, out)
	}
	m := map[string]int{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			var n int
			fmt.Sscan(f[1], &n)
			m[f[0]] = n
		}
	}
	return m
}

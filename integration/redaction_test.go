package integration

import (
	"strings"
	"testing"

	"github.com/gworker/gworker/internal/testing/testenv"
)

// TestPasswordRedaction checks that no password from a broker URL reaches
// the banner, the log or error messages.
func TestPasswordRedaction(t *testing.T) {
	t.Parallel()
	user := "gw-user-" + testenv.Suffix()
	password := "Pw-" + testenv.Suffix() + "-s3cr3t"
	if out, err := rabbitmqctl("add_user", user, password); err != nil {
		t.Fatalf("rabbitmqctl add_user: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = rabbitmqctl("delete_user", user) })
	if out, err := rabbitmqctl("set_permissions", "-p", env.vhost, user, ".*", ".*", ".*"); err != nil {
		t.Fatalf("rabbitmqctl set_permissions: %v\n%s", err, out)
	}
	url := "amqp://" + user + ":" + password + "@" + amqpHostPort + "/" + env.vhost
	q := uniqueQueue(t, "redact")

	t.Run("Worker", func(t *testing.T) {
		w := startWorker(t, workerOptions{Queues: []string{q}, Concurrency: 1, Broker: url})
		r := pyClient{Conf: map[string]any{"task_default_queue": q}}.run(t, `
emit(add=call('tasks.add', (2, 2)))
`)
		wantValue(t, "add through the worker with a password", r.outcome(t, "add"), "4", "int")
		if err := w.stop(defaultWait); err != nil {
			t.Errorf("stop: %v", err)
		}
		out := w.output()
		if strings.Contains(out, password) {
			t.Errorf("the worker printed the broker password:\n%s", out)
		}
		if !strings.Contains(out, user) {
			t.Errorf("the banner does not show the broker user %s (the URL should be shown with the password masked):\n%s", user, out)
		}
	})

	t.Run("GuestBanner", func(t *testing.T) {
		w := startWorker(t, workerOptions{Queues: []string{q + "-guest"}, Concurrency: 1})
		_ = w.stop(defaultWait)
		if out := w.output(); strings.Contains(out, ":guest@") {
			t.Errorf("the worker printed guest's password:\n%s", out)
		}
	})
}

package integration

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gworker/gworker/internal/testing/testenv"
)

// TestRefusedLogin starts gworker with a broker password the broker
// refuses: no output may show the password, the worker must still obey
// SIGTERM while it retries, and a client command must give up with an
// error, as Celery's client does.
func TestRefusedLogin(t *testing.T) {
	t.Parallel()
	user := "gw-user-" + testenv.Suffix()
	if out, err := rabbitmqctl("add_user", user, "Right-"+testenv.Suffix()); err != nil {
		t.Fatalf("rabbitmqctl add_user: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = rabbitmqctl("delete_user", user) })
	if out, err := rabbitmqctl("set_permissions", "-p", env.vhost, user, ".*", ".*", ".*"); err != nil {
		t.Fatalf("rabbitmqctl set_permissions: %v\n%s", err, out)
	}
	q := uniqueQueue(t, "login")

	t.Run("WrongPassword", func(t *testing.T) {
		// Like Celery, the worker keeps retrying a refused login; it must
		// say so without the password, and still obey SIGTERM.
		wrong := "Wrong-" + testenv.Suffix() + "-pw"
		badURL := "amqp://" + user + ":" + wrong + "@" + amqpHostPort + "/" + env.vhost
		p := startGworker(t, "worker", "--broker", badURL, "--result-backend", backendURL, "-Q", q, "-c", "1")
		if !eventually(defaultWait, func() bool { return strings.TrimSpace(p.output()) != "" || !p.alive() }) {
			t.Errorf("the worker says nothing while it cannot log in")
		}
		p.signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(defaultWait):
			t.Errorf("the worker ignores SIGTERM while it retries the broker login")
		}
		p.kill()
		if out := p.output(); strings.Contains(out, wrong) {
			t.Errorf("the connection error shows the password:\n%s", out)
		}
	})

	t.Run("Call", func(t *testing.T) {
		wrong := "Wrong-" + testenv.Suffix() + "-pw"
		badURL := "amqp://" + user + ":" + wrong + "@" + amqpHostPort + "/" + env.vhost
		// A client gives up on a refused login, as Celery's does.
		stdout, stderr, code := runGworker(t, 60*time.Second, "call", "tasks.add", "--args", "[1, 2]",
			"--broker", badURL, "--queue", q)
		if code == 0 {
			t.Errorf("call with a wrong password succeeded: %s", stdout)
		}
		if strings.Contains(stdout+stderr, wrong) {
			t.Errorf("gworker call shows the password:\n%s%s", stdout, stderr)
		}
	})
}

package redistransport

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gworker/gworker/internal/testing/testenv"
)

func TestFanoutChannels(t *testing.T) {
	b := &Broker{db: 1}
	for _, c := range []struct{ ex, rk, want string }{
		{"celery.pidbox", "", "/1.celery.pidbox"},
		{"celeryev", "worker.heartbeat", "/1.celeryev/worker.heartbeat"},
		{"celeryev", "task.multi", "/1.celeryev/task.multi"},
	} {
		if got := b.FanoutChannel(c.ex, c.rk); got != c.want {
			t.Errorf("FanoutChannel(%q, %q) = %q, want %q", c.ex, c.rk, got, c.want)
		}
	}
}

// TestFanoutRoundTrip: a Go subscriber with a topic-style binding gets
// what Go publishes, and only that.
func TestFanoutRoundTrip(t *testing.T) {
	b := newTestBroker(t, nil)
	ctx := ctxT(t)
	s, err := b.SubscribeFanout(ctx, "celeryev", "worker.#")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, rk := range []string{"task.multi", "worker.heartbeat"} {
		msg := task("ev-"+rk, 0)
		msg.DeliveryMode = 1
		if err := (FanoutPublisher{b}).Publish(ctx, "celeryev", rk, msg); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case m := <-s.Messages():
		if m.Headers["id"] != "ev-worker.heartbeat" || m.Exchange != "celeryev" || m.RoutingKey != "worker.heartbeat" {
			t.Fatalf("got %+v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message")
	}
}

// TestFanoutFromCelery: a worker-heartbeat sent by Celery 5.2.6's event
// dispatcher over the Redis broker reaches a Go subscriber.
func TestFanoutFromCelery(t *testing.T) {
	b := newTestBroker(t, nil)
	ctx := ctxT(t)
	s, err := b.SubscribeFanout(ctx, "celeryev", "worker.#")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	script := `
import os
from celery import Celery
app = Celery('t', broker=os.environ['BROKER'])
app.conf.broker_transport_options = {'global_keyprefix': os.environ['PREFIX']}
with app.connection_for_write() as conn:
    d = app.events.Dispatcher(conn, hostname='py@test', enabled=True)
    d.send('worker-heartbeat', freq=2.0)
    d.close()
`
	cmd := exec.CommandContext(ctx, testenv.Python(), "-c", script)
	cmd.Env = append(os.Environ(), "BROKER="+testenv.RedisURL(), "PREFIX="+b.cfg.GlobalKeyPrefix)
	out := make(chan []byte, 1)
	go func() {
		o, err := cmd.CombinedOutput()
		if err != nil {
			o = append(o, []byte(err.Error())...)
		}
		out <- o
	}()
	select {
	case m := <-s.Messages():
		if m.RoutingKey != "worker.heartbeat" || m.Headers["hostname"] != "py@test" ||
			!strings.Contains(string(m.Body), `"type": "worker-heartbeat"`) {
			t.Fatalf("got %+v %s", m, m.Body)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no event from Celery: %s", <-out)
	}
	<-out
}

package amqptransport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// uniqueName returns a queue or connection name unique to this test run.
func uniqueName(t testing.TB, what string) string {
	name := regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-")
	if len(name) > 40 {
		name = name[:40]
	}
	return "gwtest." + what + "." + name + "." + testenv.Suffix()
}

// requireBroker fails the test with a clear message when RabbitMQ is down.
func requireBroker(t testing.TB) {
	t.Helper()
	uri, err := amqp.ParseURI(testenv.AMQPURL())
	if err != nil {
		t.Fatalf("AMQP_URL: %v", err)
	}
	c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", uri.Host, uri.Port), 5*time.Second)
	if err != nil {
		t.Fatalf("RabbitMQ is required for this test and is unreachable at %s: %v", RedactURL(testenv.AMQPURL()), err)
	}
	c.Close()
}

type fixture struct {
	t    *testing.T
	b    *Broker
	name string // connection name
	adm  *amqp.Connection
}

// newFixture dials a Broker with a unique connection name and an admin
// connection used to inspect and clean up.
func newFixture(t *testing.T, mod ...func(*Config)) *fixture {
	t.Helper()
	requireBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	name := uniqueName(t, "conn")
	cfg := Config{URL: testenv.AMQPURL(), Logger: zaptest.NewLogger(t), ConnectionName: name,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond}
	for _, f := range mod {
		f(&cfg)
	}
	b, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	adm, err := amqp.Dial(testenv.AMQPURL())
	if err != nil {
		b.Close()
		t.Fatalf("admin dial: %v", err)
	}
	f := &fixture{t: t, b: b, name: name, adm: adm}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Broker.Close: %v", err)
		}
		adm.Close()
	})
	return f
}

// queue returns a unique task queue, deleted (with its exchange) after the
// test.
func (f *fixture) queue() Queue {
	q := TaskQueue(uniqueName(f.t, "q"))
	f.cleanupQueue(q.Name, q.Name)
	return q
}

func (f *fixture) cleanupQueue(queue, exchange string) {
	f.t.Cleanup(func() {
		ch, err := f.adm.Channel()
		if err != nil {
			f.t.Errorf("cleanup channel: %v", err)
			return
		}
		defer ch.Close()
		if _, err := ch.QueueDelete(queue, false, false, false); err != nil {
			f.t.Errorf("delete queue %s: %v", queue, err)
		}
		if exchange != "" {
			if err := ch.ExchangeDelete(exchange, false, false); err != nil {
				f.t.Errorf("delete exchange %s: %v", exchange, err)
			}
		}
	})
}

// counts returns the ready and total (ready + unacked) counts of a queue
// as rabbitmqctl reports them.
func (f *fixture) counts(queue string) (ready, unacked int) {
	f.t.Helper()
	out, err := exec.Command("rabbitmqctl", "-q", "list_queues", "name", "messages_ready", "messages_unacknowledged").CombinedOutput()
	if err != nil {
		f.t.Fatalf("rabbitmqctl list_queues: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		fs := strings.Fields(line)
		if len(fs) == 3 && fs[0] == queue {
			fmt.Sscan(fs[1], &ready)
			fmt.Sscan(fs[2], &unacked)
			return
		}
	}
	f.t.Fatalf("queue %s not listed", queue)
	return
}

// ready returns the number of ready messages of a queue (passive declare).
func (f *fixture) ready(queue string) int {
	f.t.Helper()
	ch, err := f.adm.Channel()
	if err != nil {
		f.t.Fatal(err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, false, false, false, false, nil)
	if err != nil {
		f.t.Fatalf("passive declare %s: %v", queue, err)
	}
	return q.Messages
}

// killConnections force-closes this fixture's connections (the main one,
// and the publishing one when publisher is true) with rabbitmqctl; other
// connections of the shared broker are never touched.
func (f *fixture) killConnections(publisher bool) {
	f.t.Helper()
	killConnectionsNamed(f.t, func(n string) bool {
		return n == f.name || (publisher && n == f.name+" (publisher)")
	})
}

var connRe = regexp.MustCompile(`^(<[^>]+>)\s.*\{"connection_name","([^"]*)"\}`)

func killConnectionsNamed(t testing.TB, match func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.Command("rabbitmqctl", "-q", "list_connections", "pid", "client_properties").CombinedOutput()
		if err != nil {
			t.Fatalf("rabbitmqctl list_connections: %v\n%s", err, out)
		}
		killed := 0
		for _, line := range strings.Split(string(out), "\n") {
			m := connRe.FindStringSubmatch(line)
			if m == nil || !match(m[2]) {
				continue
			}
			if o, err := exec.Command("rabbitmqctl", "-q", "close_connection", m[1], "test: forced close").CombinedOutput(); err != nil {
				t.Fatalf("rabbitmqctl close_connection: %v\n%s", err, o)
			}
			killed++
		}
		if killed > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection to close\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// publishN publishes n JSON messages with an "n" header.
func (f *fixture) publishN(ctx context.Context, queue string, n int) {
	f.t.Helper()
	for i := 0; i < n; i++ {
		msg := &protocol.RawMessage{
			Headers:      map[string]any{"n": i},
			ContentType:  protocol.ContentTypeJSON,
			Body:         []byte(fmt.Sprintf(`{"n": %d}`, i)),
			DeliveryMode: 2,
		}
		if err := f.b.Publish(ctx, "", queue, msg); err != nil {
			f.t.Fatalf("publish %d: %v", i, err)
		}
	}
}

// recv waits for one delivery.
func recv(t testing.TB, c *Consumer, timeout time.Duration) *Delivery {
	t.Helper()
	select {
	case d, ok := <-c.Deliveries():
		if !ok {
			t.Fatal("deliveries channel closed")
		}
		return d.(*Delivery)
	case <-time.After(timeout):
		t.Fatal("no delivery")
	}
	return nil
}

// eventually polls cond until it holds or the timeout expires.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func headerInt(t testing.TB, d *Delivery, key string) int64 {
	t.Helper()
	v, ok := d.Raw().Headers[key].(int64)
	if !ok {
		t.Fatalf("header %s = %#v, want int64", key, d.Raw().Headers[key])
	}
	return v
}

var _ = errors.Is

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }
func regexpQuote(s string) string   { return regexp.QuoteMeta(s) }

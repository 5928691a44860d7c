package amqptransport

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gworker/gworker/internal/testing/testenv"
)

// pyPublish publishes with py-amqp (as every Python Celery client does) the
// given messages to the default exchange; each is a Python dict literal of
// headers. py-amqp writes ints beyond 32 bits with field type 'L'.
func pyPublish(t *testing.T, queue string, headers ...string) {
	t.Helper()
	script := `
import sys, amqp
queue = sys.argv[1]
c = amqp.Connection('127.0.0.1:5672', userid='guest', password='guest')
c.connect()
ch = c.channel()
ch.confirm_select()
for h in sys.argv[2:]:
    headers = eval(h, {'__builtins__': {}})
    msg = amqp.Message(body='{"n": %d}' % headers['n'], content_type='application/json',
                       content_encoding='utf-8', application_headers=headers, delivery_mode=2)
    ch.basic_publish(msg, exchange='', routing_key=queue)
c.close()
`
	out, err := exec.Command(testenv.Python(), append([]string{"-c", script, queue}, headers...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("py-amqp publish: %v\n%s", err, out)
	}
}

func poisonBatch() []string {
	return []string{
		`{'n': 0, 'task': 'tasks.add'}`,
		`{'n': 1, 'task': 'tasks.add', 'big': 2**40, 'neg': -2**40, 'nested': {'l': [2**35, 1]}}`,
		`{'n': 2}`,
		`{'n': 3, 'huge': 2**62}`,
		`{'n': 4}`,
	}
}

func checkPoisonHeaders(t *testing.T, n int64, h map[string]any) {
	t.Helper()
	switch n {
	case 1:
		if h["big"] != int64(1)<<40 {
			t.Errorf("big = %#v, want int64 2**40", h["big"])
		}
		if h["neg"] != float64(-(int64(1) << 40)) {
			t.Errorf("neg = %#v, want -2**40 (as float64: amqp091-go cannot write a negative 64-bit int py-amqp reads back)", h["neg"])
		}
		l := h["nested"].(map[string]any)["l"].([]any)
		if l[0] != int64(1)<<35 || l[1] != int64(1) {
			t.Errorf("nested = %#v", l)
		}
	case 3:
		if h["huge"] != int64(1)<<62 {
			t.Errorf("huge = %#v", h["huge"])
		}
	}
}

// The 'L' trap: a message from Python with a 64-bit int header kills
// amqp091-go's connection. The consumer must rescue it and receive every
// message, the former poison ones with their values intact, without looping.
func TestQuarantineRescuesPythonLHeaders(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatal(err)
	}
	pyPublish(t, q.Name, poisonBatch()...)
	eventually(t, 10*time.Second, "5 published", func() bool { return f.ready(q.Name) == 5 })

	c, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{q}, Prefetch: 10, GlobalQoS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := map[int64]bool{}
	for len(done) < 5 {
		var d *Delivery
		select {
		case dv := <-c.Deliveries():
			d = dv.(*Delivery)
		case <-ctx.Done():
			t.Fatalf("only %v processed", done)
		}
		n := headerInt(t, d, "n")
		err := d.Ack()
		if errors.Is(err, ErrStaleDelivery) {
			continue // delivered before the connection died; comes again
		}
		if err != nil {
			t.Fatal(err)
		}
		if done[n] {
			t.Fatalf("message %d processed twice", n)
		}
		done[n] = true
		checkPoisonHeaders(t, n, d.Raw().Headers)
	}
	// No crash loop: one failure, one sweep, one new channel.
	c.mu.Lock()
	channels := c.genSeq
	c.mu.Unlock()
	if channels > 3 {
		t.Fatalf("consumer opened %d channels: a redelivery loop", channels)
	}
	eventually(t, 10*time.Second, "queue drained", func() bool {
		r, u := f.counts(q.Name)
		return r == 0 && u == 0
	})
}

func TestQuarantineSweepDirect(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatal(err)
	}
	pyPublish(t, q.Name, poisonBatch()...)
	eventually(t, 10*time.Second, "5 published", func() bool { return f.ready(q.Name) == 5 })
	rep, err := f.b.QuarantineSweep(ctx, q.Name)
	if err != nil {
		t.Fatal(err)
	}
	if rep != (SweepReport{Inspected: 5, Republished: 2}) {
		t.Fatalf("report %+v", rep)
	}
	// A second sweep finds nothing left to fix.
	rep, err = f.b.QuarantineSweep(ctx, q.Name)
	if err != nil || rep != (SweepReport{Inspected: 5}) {
		t.Fatalf("second sweep %+v %v", rep, err)
	}
	// Now amqp091-go reads every message on a single channel.
	c, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{q}, Prefetch: 10, GlobalQoS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var order []string
	for i := 0; i < 5; i++ {
		d := recv(t, c, 10*time.Second)
		n := headerInt(t, d, "n")
		checkPoisonHeaders(t, n, d.Raw().Headers)
		order = append(order, fmt.Sprint(n))
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
		if d.Epoch() != 1 {
			t.Fatalf("channel epoch %d: the connection died", d.Epoch())
		}
	}
	// Readable messages kept their place; the republished ones moved to
	// the back.
	if got := strings.Join(order, ","); got != "0,2,4,1,3" {
		t.Fatalf("order %s", got)
	}
	// A missing queue (an auto-delete pidbox or reply queue gone with the
	// connection that died) is nothing to sweep, not a failure, and the
	// sweep goes on to the next queue.
	q2 := f.queue()
	if err := f.b.Declare(ctx, q2); err != nil {
		t.Fatal(err)
	}
	pyPublish(t, q2.Name, poisonBatch()[:1]...)
	eventually(t, 10*time.Second, "1 published", func() bool { return f.ready(q2.Name) == 1 })
	rep, err = f.b.QuarantineSweep(ctx, uniqueName(t, "missing"), q2.Name)
	if err != nil || rep.Inspected != 1 {
		t.Fatalf("sweep of a missing queue, then %s: %+v %v", q2.Name, rep, err)
	}
}

// A real Celery client message with headers={'big': 2**40} (the reproduction
// of the trap) reaches a Go consumer intact.
func TestQuarantineCeleryClientMessage(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	script := `
import sys
from celery import Celery
app = Celery('t', broker=sys.argv[2])
# Confirmed: the script exits right after, and RabbitMQ drops what a
# channel had not yet routed when its connection goes away.
app.conf.broker_transport_options = {'confirm_publish': True}
app.send_task('tasks.add', (2, 2), queue=sys.argv[1], headers={'big': 2**40})
app.send_task('tasks.add', (3, 3), queue=sys.argv[1])
`
	if out, err := exec.Command(testenv.Python(), "-c", script, q.Name, testenv.CeleryBrokerURL()).CombinedOutput(); err != nil {
		t.Fatalf("celery send_task: %v\n%s", err, out)
	}
	c, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{q}, Prefetch: 4, GlobalQoS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bodies := map[string]map[string]any{}
	for len(bodies) < 2 {
		var d *Delivery
		select {
		case dv := <-c.Deliveries():
			d = dv.(*Delivery)
		case <-ctx.Done():
			t.Fatalf("received %d of 2", len(bodies))
		}
		if err := d.Ack(); errors.Is(err, ErrStaleDelivery) {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		bodies[string(d.Raw().Body[:8])] = d.Raw().Headers
	}
	h := bodies["[[2, 2],"]
	if h == nil || h["big"] != int64(1)<<40 || h["task"] != "tasks.add" || h["retries"] != int64(0) {
		t.Fatalf("headers of the former poison message: %#v (bodies %v)", h, bodies)
	}
}

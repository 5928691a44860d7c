package integration

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gworker/gworker/internal/testing/testenv"
)

// delayedKey matches a routing key with one delay prefix (28 binary words)
// before key.
func delayedKey(key string) *regexp.Regexp {
	return regexp.MustCompile(`^([01]\.){28}` + regexp.QuoteMeta(key) + `$`)
}

// celeryRefusals are what a Celery 5.5.3 worker logs when a declaration of
// its own, or of native delayed delivery, is refused.
var celeryRefusals = []string{"PRECONDITION_FAILED", "inequivalent arg", "Failed to setup delayed delivery",
	"Failed to declare exchanges and queues", "Failed to bind queue", "NOT_FOUND"}

// Native delayed delivery with Celery 5.5.3 on quorum queues: a gworker
// worker alone sets the topology up, so the countdown tasks a Celery 5.5.3
// producer sends through celery_delayed_27 reach it; countdown tasks
// gworker sends (call, retries) take the same route, and a task retried
// five times keeps one delay prefix and is not dropped as a dead-letter
// cycle; a Celery 5.5.3 worker started beside it meets no refusal; every
// task runs exactly once, after its eta, whichever worker takes it.
func TestDelayedDeliveryCelery55(t *testing.T) {
	t.Parallel()
	vhost, broker := privateVhost(t)
	q := uniqueQueue(t, "delayed")
	py := py55(t, broker, quorumTopicConf(q))
	w := startWorker(t, workerOptions{Queues: []string{q}, Broker: broker, Concurrency: 4, Extra: quorumTopicFlags})

	// gworker alone.
	res := py.run(t, sendDue55("due", 4, 2)+sendDue55("late", 1, 20)+`
emit(retry=send('tasks.retry_later', (5, 1)).id)
`)
	var due, late []dueTask
	var retryID string
	res.get(t, "due", &due)
	res.get(t, "late", &late)
	res.get(t, "retry", &retryID)
	due = append(due, callDue(t, broker, q, 2, 1))
	late = append(late, callDue(t, broker, q, 20, 2))
	// 20 s is 10100 in binary: both wait in level 4 (16 s) first, where
	// they are seen before they move on.
	var levels map[string]int
	if !eventually(10*time.Second, func() bool {
		levels = queueMessages(t, rabbitmqctl, vhost)
		return levels["celery_delayed_4"] == 2
	}) {
		t.Errorf("the 20 s countdowns of Celery and gworker are not both in celery_delayed_4: %v", levels)
	}
	ranOnceAfterETA(t, append(due, late...), w)

	meta := waitMeta(t, retryID, 90*time.Second, "SUCCESS")
	var retried struct {
		Retries    int    `json:"retries"`
		Exchange   string `json:"exchange"`
		RoutingKey string `json:"routing_key"`
		Deaths     int    `json:"x_death_max_count"`
	}
	if err := json.Unmarshal(meta.Result, &retried); err != nil {
		t.Fatalf("retry_later result %s: %v", meta.Result, err)
	}
	if retried.Retries != 5 || !strings.HasPrefix(retried.Exchange, "celery_delayed_") ||
		!delayedKey(q).MatchString(retried.RoutingKey) || retried.Deaths != 1 {
		t.Errorf("after 5 retries of 1 s the task was delivered as %+v; want through the levels, one delay prefix before %q, x-death counts of 1", retried, q)
	}

	// A Celery 5.5.3 worker beside it.
	pw := startPy55Worker(t, broker, quorumTopicConf(q), q)
	for _, bad := range celeryRefusals {
		if strings.Contains(pw.output(), bad) {
			t.Errorf("the Celery 5.5.3 worker started beside gworker logs %q", bad)
		}
	}
	res = py.run(t, sendDue55("due", 8, 2))
	var mixed []dueTask
	res.get(t, "due", &mixed)
	mixed = append(mixed, callDue(t, broker, q, 2, 3), callDue(t, broker, q, 3, 4))
	ranOnceAfterETA(t, mixed, w, pw.gworkerProc)
	w.requireAlive()
	if !pw.alive() {
		t.Fatal("the Celery 5.5.3 worker exited")
	}
}

// The other order: a Celery 5.5.3 worker declares first, gworker finds
// every declaration as it would have made it (nothing adopted, nothing
// refused), and countdown tasks of both producers run once, after their
// eta.
func TestDelayedDeliveryAfterCelery55(t *testing.T) {
	t.Parallel()
	_, broker := privateVhost(t)
	q := uniqueQueue(t, "delayed55")
	py := py55(t, broker, quorumTopicConf(q))
	pw := startPy55Worker(t, broker, quorumTopicConf(q), q)
	w := startWorker(t, workerOptions{Queues: []string{q}, Broker: broker, Concurrency: 4, Extra: quorumTopicFlags})
	for _, bad := range []string{"other arguments than gworker declares", "another type or flags", "cannot set up native delayed delivery", "PRECONDITION_FAILED"} {
		if strings.Contains(w.log(), bad) {
			t.Errorf("gworker started after Celery 5.5.3 logs %q", bad)
		}
	}
	res := py.run(t, sendDue55("due", 6, 2))
	var due []dueTask
	res.get(t, "due", &due)
	due = append(due, callDue(t, broker, q, 2, 1), callDue(t, broker, q, 2, 2))
	ranOnceAfterETA(t, due, w, pw.gworkerProc)
	for _, bad := range celeryRefusals {
		if strings.Contains(pw.output(), bad) {
			t.Errorf("the Celery 5.5.3 worker logs %q", bad)
		}
	}
}

// Bad input around native delayed delivery is handled like any message: a
// task that reached its queue through celery_delayed_delivery with a key
// that is not 28 binary words plus the queue's key, or that carries an
// x-death that is not what RabbitMQ writes, runs after its eta (and is
// retried through the levels like any other).
func TestDelayedDeliveryBadInput(t *testing.T) {
	t.Parallel()
	_, broker := privateVhost(t)
	q := uniqueQueue(t, "delayedbad")
	w := startWorker(t, workerOptions{Queues: []string{q}, Broker: broker, Concurrency: 4, Extra: quorumTopicFlags})
	conn, err := amqp.Dial(broker)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	var due []dueTask
	publish := func(exchange, key, task string, args string, extra amqp.Table) string {
		t.Helper()
		id := testenv.UUID()
		eta := time.Now().UTC().Add(1500 * time.Millisecond)
		h := validHeaders(id)
		h["task"], h["eta"] = task, eta.Format("2006-01-02T15:04:05.000000+00:00")
		for k, v := range extra {
			h[k] = v
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, amqp.Publishing{Headers: h,
			ContentType: "application/json", ContentEncoding: "utf-8", DeliveryMode: 2,
			Body: []byte("[" + args + ", {}, " + embed + "]")})
		if err != nil || !c.Wait() {
			t.Fatalf("publish to %q with %q: %v", exchange, key, err)
		}
		trackTasks(t, id)
		due = append(due, dueTask{ID: id, ETA: eta.Format(time.RFC3339Nano)})
		return id
	}
	words := strings.Repeat("0.", 27)
	publish("celery_delayed_delivery", "0.1."+q, "tasks.add", "[1, 2]", nil)
	publish("celery_delayed_delivery", "2."+words+q, "tasks.add", "[1, 2]", nil)
	publish("celery_delayed_delivery", words+"1.x."+q, "tasks.add", "[1, 2]", nil)
	publish("", q, "tasks.add", "[1, 2]", amqp.Table{"x-death": "garbage", "x-first-death-queue": int32(3)})
	publish("", q, "tasks.add", "[1, 2]", amqp.Table{"x-death": []any{int32(5), amqp.Table{"count": "many"}}})
	retried := publish("", q, "tasks.retry_later", "[2, 1]", amqp.Table{"x-death": []any{amqp.Table{"count": int64(99), "queue": "celery_delayed_0"}}})
	ranOnceAfterETA(t, due, w)
	var got struct {
		Retries    int    `json:"retries"`
		RoutingKey string `json:"routing_key"`
		Deaths     int    `json:"x_death_max_count"`
	}
	if err := json.Unmarshal(waitMeta(t, retried, time.Minute, "SUCCESS").Result, &got); err != nil {
		t.Fatal(err)
	}
	if got.Retries != 2 || !delayedKey(q).MatchString(got.RoutingKey) || got.Deaths != 1 {
		t.Errorf("a task published with a made-up x-death was retried as %+v", got)
	}
	w.requireAlive()
}

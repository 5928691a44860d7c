package rabbitmq_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
	"github.com/gworker/gworker/worker"
)

// Environment of the worker process the poison tests start by running
// this test binary again.
const (
	childBroker = "GWORKER_POISON_CHILD_BROKER"
	childQueue  = "GWORKER_POISON_CHILD_QUEUE"
	childMax    = "GWORKER_POISON_CHILD_MAX"
	// childNoCounter hides the result backend's redelivery counter, so
	// that the worker counts with the broker's x-delivery-count.
	childNoCounter = "GWORKER_POISON_CHILD_NO_COUNTER"
	exitCode       = 3
)

func TestMain(m *testing.M) {
	if os.Getenv(childBroker) != "" {
		os.Exit(runChild())
	}
	goleak.VerifyTestMain(m)
}

// runChild is a worker whose task poison.exit ends the process, as a task
// that crashes its worker (out of memory, a fatal error in C code, a
// panic in a goroutine of its own) does.
func runChild() int {
	ctx := context.Background()
	b, err := amqptransport.Dial(ctx, amqptransport.Config{URL: os.Getenv(childBroker)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rb, err := redisbackend.Open(testenv.RedisURL(), redisbackend.Options{Expires: 10 * time.Minute})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	reg := worker.NewRegistry()
	if err := reg.Register("poison.exit", func(ctx context.Context) error {
		os.Exit(exitCode)
		return nil
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	max, _ := strconv.Atoi(os.Getenv(childMax))
	log, _ := zap.NewDevelopment()
	var backend result.Backend = rb
	if os.Getenv(childNoCounter) != "" {
		backend = struct{ result.Backend }{rb}
	}
	w, err := worker.New(worker.Config{
		Registry: reg, Broker: b, Backend: backend,
		Queues: []string{os.Getenv(childQueue)}, Concurrency: 1, PrefetchMultiplier: 1,
		AcksLate: true, MaxRedeliveries: max, Logger: log, DisableFollowups: true,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// poisonEnv is a virtual host of its own with a task queue that
// dead-letters to a queue named dead.
type poisonEnv struct {
	t      *testing.T
	url    string
	queue  string
	conn   *amqp.Connection
	broker *amqptransport.Broker
	rb     *redisbackend.Backend
	// countedBy is where the worker must say it took the count from:
	// "result backend", or "x-delivery-count" on a quorum queue when the
	// backend's counter is hidden.
	countedBy string
}

func newPoisonEnv(t *testing.T, queueType, countedBy string) *poisonEnv {
	t.Helper()
	vhost := "gwtest-poison-" + testenv.Suffix()
	for _, args := range [][]string{{"add_vhost", vhost}, {"set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"}} {
		if out, err := exec.Command("rabbitmqctl", append([]string{"-q"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("rabbitmqctl %v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() { _ = exec.Command("rabbitmqctl", "-q", "delete_vhost", vhost).Run() })
	u, err := url.Parse(testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + vhost
	e := &poisonEnv{t: t, url: u.String(), queue: "poison", countedBy: countedBy}
	e.conn, err = amqp.Dial(e.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.conn.Close() })
	ch, err := e.conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	// Declared the way an operator would: a dead-letter exchange, and for
	// quorum queues the type. The worker adopts the queue as it is.
	args := amqp.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"}
	if queueType != "" {
		args["x-queue-type"] = queueType
	}
	if _, err := ch.QueueDeclare("dead", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(e.queue, "direct", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(e.queue, true, false, false, false, args); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(e.queue, e.queue, e.queue, false, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e.broker, err = amqptransport.Dial(ctx, amqptransport.Config{URL: e.url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.broker.Close() })
	e.rb, err = redisbackend.Open(testenv.RedisURL(), redisbackend.Options{Expires: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.rb.Close() })
	return e
}

// runWorker runs one worker process until it exits or the task's FAILURE
// is stored; it reports whether the process exited (and killed it
// otherwise).
func (e *poisonEnv) runWorker(id string, max int) (exited bool) {
	e.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childBroker+"="+e.url, childQueue+"="+e.queue, childMax+"="+strconv.Itoa(max))
	if e.countedBy == "x-delivery-count" {
		cmd.Env = append(cmd.Env, childNoCounter+"=1")
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case err := <-done:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitCode {
				e.t.Fatalf("worker process ended with %v, want exit code %d\n%s", err, exitCode, out.String())
			}
			return true
		case <-tick.C:
			if m, err := e.rb.Get(context.Background(), id); err == nil && m.Status == result.Failure {
				_ = cmd.Process.Kill()
				<-done
				if !strings.Contains(out.String(), "Poison message") || !strings.Contains(out.String(), e.countedBy) {
					e.t.Errorf("the worker did not log the poison message counted by %s:\n%s", e.countedBy, out.String())
				}
				return false
			}
		case <-deadline:
			_ = cmd.Process.Kill()
			<-done
			e.t.Fatalf("worker process neither exited nor failed the task within 60 s\n%s", out.String())
		}
	}
}

// A task that kills its worker every time runs 1 + MaxRedeliveries times,
// then fails with WorkerLostError and its message is dead-lettered.
func testPoison(t *testing.T, queueType, countedBy string) {
	e := newPoisonEnv(t, queueType, countedBy)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := producer.New(e.broker, producer.Options{Backend: e.rb, DefaultQueue: e.queue})
	r, err := p.SendTask(ctx, "poison.exit", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Forget(context.Background()) })
	const max = 2
	runs := 0
	for e.runWorker(r.ID(), max) {
		runs++
		if runs > max+1 {
			t.Fatalf("the task ran %d times, more than 1 + max redeliveries (%d)", runs, max)
		}
	}
	if runs != max+1 {
		t.Errorf("the task ran %d times before it was failed, want %d", runs, max+1)
	}
	m, err := e.rb.Get(ctx, r.ID())
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(m.Result); m.Status != result.Failure || !strings.Contains(got, "WorkerLostError") ||
		!strings.Contains(got, fmt.Sprintf("delivered %d times", max+2)) {
		t.Errorf("stored FAILURE %v, want WorkerLostError saying it was delivered %d times", m.Result, max+2)
	}
	ch, err := e.conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	// Quorum queues report their counts with some delay.
	deadline := time.Now().Add(30 * time.Second)
	for {
		dead, err1 := ch.QueueDeclarePassive("dead", true, false, false, false, nil)
		q, err2 := ch.QueueDeclarePassive(e.queue, true, false, false, false, nil)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if dead.Messages == 1 && q.Messages == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead-letter queue holds %d messages, task queue %d; want 1 and 0", dead.Messages, q.Messages)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestPoisonMessageClassicQueue(t *testing.T) { testPoison(t, "", "result backend") }

// The backend's count comes first; on a quorum queue the broker's
// x-delivery-count stands in when the backend cannot count.
func TestPoisonMessageQuorumQueue(t *testing.T) { testPoison(t, "quorum", "result backend") }

func TestPoisonMessageQuorumQueueCountedByBroker(t *testing.T) {
	testPoison(t, "quorum", "x-delivery-count")
}

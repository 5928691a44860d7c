package rabbitmq_test

import (
	"context"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/worker"
)

// runLog records the finished runs of each task id.
type runLog struct {
	mu       sync.Mutex
	finished map[string]int
	runs     int         // started runs
	started  chan string // each start, for the test to wait on
}

func (l *runLog) finishedOnce() (distinct, reruns int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.finished {
		distinct++
		reruns += n - 1
	}
	return distinct, reruns
}

var lostAckConnRe = regexp.MustCompile(`^(<[^>]+>)\s.*\{"connection_name","([^"]*)"\}`)

// closeConnection force-closes the connections named name with rabbitmqctl
// (never another connection of the shared broker) and returns how many.
func closeConnection(t *testing.T, name string) int {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", "-q", "list_connections", "pid", "client_properties").CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl list_connections: %v\n%s", err, out)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		if m := lostAckConnRe.FindStringSubmatch(line); m != nil && m[2] == name {
			if o, err := exec.Command("rabbitmqctl", "-q", "close_connection", m[1], "test: forced close").CombinedOutput(); err != nil {
				t.Fatalf("rabbitmqctl close_connection: %v\n%s", err, o)
			}
			n++
		}
	}
	return n
}

// The experiment of lost acknowledgements: acks_late tasks of a second,
// four slots, and the worker's connection force-closed three times while
// tasks run. Each close loses the acknowledgements of the tasks running
// then, and the broker delivers their messages again, mostly after they
// finished. None of the tasks that finished may run a second time.
func TestLostAcksDoNotRunFinishedTasksAgain(t *testing.T) {
	e := newPoisonEnv(t, "", "")
	const tasks, slots, closes = 40, 4, 3
	connName := "gworker-lostack-" + testenv.Suffix()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	wb, err := amqptransport.Dial(ctx, amqptransport.Config{URL: e.url, ConnectionName: connName})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wb.Close() })

	l := &runLog{finished: map[string]int{}, started: make(chan string, 10*tasks)}
	reg := worker.NewRegistry()
	if err := reg.Register("lostack.second", func(ctx context.Context) error {
		req, _ := worker.RequestFromContext(ctx)
		l.mu.Lock()
		l.runs++
		l.mu.Unlock()
		l.started <- req.ID
		time.Sleep(time.Second)
		l.mu.Lock()
		l.finished[req.ID]++
		l.mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Config{Registry: reg, Broker: wb, Queues: []string{e.queue},
		Concurrency: slots, AcksLate: true, DisableFollowups: true, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(wctx) }()
	defer func() {
		stop()
		if err := <-runErr; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}()

	p := producer.New(e.broker, producer.Options{DefaultQueue: e.queue})
	for range tasks {
		if _, err := p.SendTask(ctx, "lostack.second", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Close the connection while the 6th, 16th and 26th starts run: the
	// tasks running then lose their acknowledgements.
	starts := 0
	timeout := time.After(3 * time.Minute)
	for k := range closes {
		for starts < 6+10*k {
			select {
			case <-l.started:
				starts++
			case <-timeout:
				t.Fatalf("%d task starts within 3 minutes", starts)
			}
		}
		if closeConnection(t, connName) == 0 {
			t.Fatalf("no connection named %s to close", connName)
		}
	}
	// Every task finishes once; then the queue empties (the copies of the
	// lost acknowledgements are acknowledged too).
	ch, err := e.conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		distinct, _ := l.finishedOnce()
		q, err := ch.QueueDeclarePassive(e.queue, true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if distinct == tasks && q.Messages == 0 && unacked(t, e, e.queue) == 0 {
			break
		}
		select {
		case <-tick.C:
		case <-l.started:
		case <-timeout:
			t.Fatalf("after 3 minutes %d of %d tasks finished, %d messages ready", distinct, tasks, q.Messages)
		}
	}
	distinct, reruns := l.finishedOnce()
	l.mu.Lock()
	runs := l.runs
	l.mu.Unlock()
	t.Logf("%d tasks, %d slots, %d forced closes: %d finished, %d re-runs of finished tasks, %d runs started", tasks, slots, closes, distinct, reruns, runs)
	if reruns != 0 {
		t.Errorf("%d finished tasks ran again, want 0", reruns)
	}
}

// unacked returns the messages of queue delivered and not yet settled.
func unacked(t *testing.T, e *poisonEnv, queue string) int {
	t.Helper()
	vhost := strings.TrimPrefix(e.url[strings.LastIndex(e.url, "/"):], "/")
	out, err := exec.Command("rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages_unacknowledged").CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl list_queues: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == queue {
			if f[1] == "0" {
				return 0
			}
			return 1
		}
	}
	return -1
}

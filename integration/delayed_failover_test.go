package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gworker/gworker/internal/testing/rmqnode"
)

// startPair starts two private RabbitMQ nodes that do not form a cluster:
// the two brokers of a failover list, each with its own queues.
func startPair(t *testing.T) [2]*rmqnode.Node {
	t.Helper()
	home := filepath.Join(os.TempDir(), "rmqnode-home-gwdelaypair")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var nodes [2]*rmqnode.Node
	var errs [2]error
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = rmqnode.Start(ctx, rmqnode.Config{Name: fmt.Sprintf("gwdelay%d", i+1),
				Port: 5690 + i, DistPort: 25690 + i, Home: home, StartTimeout: 4 * time.Minute})
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, n := range nodes {
			if n != nil {
				if err := n.Remove(context.Background()); err != nil {
					t.Errorf("stop %s: %v", n.Name(), err)
				}
			}
		}
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

// nodeCtl runs rabbitmqctl against a private node.
func nodeCtl(n *rmqnode.Node) func(args ...string) ([]byte, error) {
	return func(args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return n.Ctl(ctx, args...)
	}
}

// Native delayed delivery on every broker of a failover list: a worker
// connected to the first node sets it up there before it is ready, and on
// the second in the background (declaring its queue there too), so that
// countdown tasks a Celery 5.5.3 producer sends to the second node wait
// there, not lost, until the first node dies and the worker fails over;
// after the failover, countdown tasks of both producers run, each once
// and after its eta.
func TestDelayedDeliveryFailoverPair(t *testing.T) {
	t.Parallel()
	nodes := startPair(t)
	url1, url2 := nodes[0].URL(), nodes[1].URL()
	q := uniqueQueue(t, "delayedpair")
	w := startWorker(t, workerOptions{Queues: []string{q}, Broker: url1 + ";" + url2, Concurrency: 4,
		Extra: append([]string{"--broker-heartbeat", "5"}, quorumTopicFlags...)})
	levels := queueMessages(t, nodeCtl(nodes[0]), "/")
	if _, ok := levels["celery_delayed_0"]; !ok {
		t.Fatalf("no delayed delivery topology on the node the worker is on when it is ready: %v", levels)
	}
	if !eventually(60*time.Second, func() bool {
		levels = queueMessages(t, nodeCtl(nodes[1]), "/")
		_, topo := levels["celery_delayed_0"]
		_, queue := levels[q]
		return topo && queue
	}) {
		t.Fatalf("no delayed delivery topology, or no queue %s, on the second node: %v", q, levels)
	}

	// Through the first node, while the worker is on it.
	py1 := py55(t, url1+"/", quorumTopicConf(q))
	res := py1.run(t, sendDue55("due", 3, 2))
	var first []dueTask
	res.get(t, "due", &first)
	first = append(first, callDue(t, url1, q, 2, 1))
	ranOnceAfterETA(t, first, w)

	// Through the second node, where nothing consumes yet.
	py2 := py55(t, url2+"/", quorumTopicConf(q))
	res = py2.run(t, sendDue55("due", 3, 2))
	var second []dueTask
	res.get(t, "due", &second)
	second = append(second, callDue(t, url2, q, 2, 2))
	if !eventually(30*time.Second, func() bool { return queueMessages(t, nodeCtl(nodes[1]), "/")[q] == len(second) }) {
		t.Fatalf("the countdown tasks sent to the second node did not reach %s there: %v", q, queueMessages(t, nodeCtl(nodes[1]), "/"))
	}
	if err := nodes[0].Kill(); err != nil {
		t.Fatal(err)
	}
	ranOnceAfterETA(t, second, w)

	// After the failover the worker set it up again where it is now.
	res = py2.run(t, sendDue55("due", 3, 2))
	var third []dueTask
	res.get(t, "due", &third)
	third = append(third, callDue(t, url2, q, 2, 3))
	ranOnceAfterETA(t, third, w)
	w.requireAlive()
}

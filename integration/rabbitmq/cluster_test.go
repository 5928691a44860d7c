package rabbitmq_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/internal/testing/rmqnode"
	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
	"github.com/gworker/gworker/worker"
)

// clusterTasks is how many tasks the cluster failover test sends:
// $GWORKER_CLUSTER_N, or a number small enough for CI.
func clusterTasks(t *testing.T) int {
	if s := os.Getenv("GWORKER_CLUSTER_N"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("GWORKER_CLUSTER_N=%q: want a positive number", s)
		}
		return n
	}
	return 400
}

// startCluster starts three private nodes and clusters them.
func startCluster(t *testing.T) []*rmqnode.Node {
	t.Helper()
	home := filepath.Join(os.TempDir(), "rmqnode-home-gwcluster")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	nodes := make([]*rmqnode.Node, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = rmqnode.Start(ctx, rmqnode.Config{Name: fmt.Sprintf("gwcluster%d", i+1),
				Port: 5681 + i, DistPort: 25681 + i, Home: home, StartTimeout: 4 * time.Minute})
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
	for _, n := range nodes[1:] {
		err := n.Join(ctx, nodes[0])
		if err != nil {
			// A node that died after it first answered (seen once on a
			// loaded machine) is started again before giving up.
			t.Logf("joining %s failed, starting it again: %v\nlog:\n%s", n.Name(), err, logTail(n.LogPath(), 40))
			if err = n.Launch(ctx); err == nil {
				err = n.Join(ctx, nodes[0])
			}
		}
		if err != nil {
			t.Fatalf("%v\nlog:\n%s", err, logTail(n.LogPath(), 40))
		}
	}
	return nodes
}

// logTail returns the last lines of a file, for failure messages.
func logTail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// A worker on a three-node cluster consuming a quorum queue replicated on
// all three loses nothing when the node it is connected to is killed with
// SIGKILL: it reconnects to another node of its failover list and goes on
// consuming, and never stops.
func TestClusterNodeKilled(t *testing.T) {
	n := clusterTasks(t)
	nodes := startCluster(t)
	urls := make([]string, len(nodes))
	for i, node := range nodes {
		urls[i] = node.URL()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b, err := amqptransport.Dial(ctx, amqptransport.Config{URL: strings.Join(urls, ";"), Logger: zaptest.NewLogger(t),
		DefaultQueueType: amqptransport.QueueTypeQuorum, Heartbeat: 5 * time.Second,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: time.Second, ConnectionName: "gwcluster-worker"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// The publisher starts on the last node, which is not killed.
	pb, err := amqptransport.Dial(ctx, amqptransport.Config{URL: urls[2] + ";" + urls[1],
		DefaultQueueType: amqptransport.QueueTypeQuorum, ConnectionName: "gwcluster-publisher"})
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close()
	rb, err := redisbackend.Open(testenv.RedisURL(), redisbackend.Options{Expires: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()

	queue := "cluster-" + testenv.Suffix()
	if err := pb.DeclareTaskQueue(ctx, queue); err != nil {
		t.Fatal(err)
	}
	out, err := nodes[0].Ctl(ctx, "list_queues", "-q", "--no-table-headers", "name", "type", "members")
	if err != nil {
		t.Fatal(err)
	}
	if line := string(out); !strings.Contains(line, queue+"\tquorum") || strings.Count(line, "@localhost") != 3 {
		t.Fatalf("the queue is not a quorum queue with three members:\n%s", out)
	}

	// The oracle, outside the broker: every execution of every task.
	// Tasks after the first quarter wait for the kill, so that the worker
	// holds deliveries in flight when its node dies, whatever the speed of
	// the machine.
	var mu sync.Mutex
	runs := map[int]int{}
	var killed time.Time
	var killedOn string
	var restarted time.Duration // from the kill to the first task started on another node
	gate := make(chan struct{})
	var gateOnce sync.Once
	openGate := func() { gateOnce.Do(func() { close(gate) }) }
	defer openGate()
	reg := worker.NewRegistry()
	if err := reg.Register("cluster.task", func(ctx context.Context, i int) (int, error) {
		mu.Lock()
		if !killed.IsZero() && restarted == 0 && b.ConnectedURL() != killedOn {
			restarted = time.Since(killed)
		}
		mu.Unlock()
		if i >= n/4 {
			<-gate
		}
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		runs[i]++
		mu.Unlock()
		return i, nil
	}, worker.Params("i")); err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Config{Registry: reg, Broker: b, Backend: rb,
		Queues: []string{queue}, Concurrency: 8, AcksLate: true, DisableFollowups: true})
	if err != nil {
		t.Fatal(err)
	}

	p := producer.New(pb, producer.Options{Backend: rb, DefaultQueue: queue})
	ids := make([]string, n)
	for i := range ids {
		r, err := p.SendTask(ctx, "cluster.task", []any{i}, nil)
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		ids[i] = r.ID()
	}
	t.Cleanup(func() {
		for _, id := range ids {
			_ = rb.Forget(context.Background(), id)
		}
	})

	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	finished := func() (unique, total int) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range runs {
			unique++
			total += c
		}
		return unique, total
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			select {
			case err := <-done:
				t.Fatalf("the worker stopped (%v) while waiting for %s", err, what)
			case <-ctx.Done():
				u, tot := finished()
				t.Fatalf("timed out waiting for %s (%d of %d tasks done, %d runs)", what, u, n, tot)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	waitFor("a quarter of the tasks", func() bool { u, _ := finished(); return u >= n/4 })

	port := 0
	on := b.ConnectedURL()
	var victim *rmqnode.Node
	for _, node := range nodes {
		if strings.Contains(on, ":"+strconv.Itoa(node.Port())+"/") {
			victim = node
			port = node.Port()
		}
	}
	if victim == nil {
		t.Fatalf("the worker's broker %s is none of the nodes", on)
	}
	doneAtKill, _ := finished()
	mu.Lock()
	killed, killedOn = time.Now(), on
	mu.Unlock()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	openGate()
	waitFor("every task", func() bool { u, _ := finished(); return u == n })
	mu.Lock()
	recovery := restarted
	mu.Unlock()
	unique, total := finished()

	// Every task has its SUCCESS result.
	missing := 0
	for i, id := range ids {
		m, err := rb.Get(ctx, id)
		if err != nil || m.Status != result.Success {
			missing++
			if missing <= 5 {
				t.Errorf("task %d (%s): %v %v", i, id, m, err)
			}
		}
	}
	select {
	case err := <-done:
		t.Fatalf("the worker stopped: %v", err)
	default:
	}
	t.Logf("cluster failover: N=%d killed=node:%d done_at_kill=%d lost=%d missing_results=%d extra_runs=%d consuming_again_after=%v now_on=%s",
		n, port, doneAtKill, n-unique, missing, total-unique, recovery.Round(time.Millisecond), b.ConnectedURL())
	if unique != n {
		t.Errorf("%d tasks lost", n-unique)
	}
}

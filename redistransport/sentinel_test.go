package redistransport

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"
)

// Private ports of the Sentinel test: a master, a replica, three sentinels.
const (
	sentMasterPort  = 6430
	sentReplicaPort = 6431
	sentFirstPort   = 6432
	sentMasterName  = "gwmaster"
)

// startRedis runs a private redis-server (or redis-sentinel with a config
// file) until the test ends.
func startRedis(t *testing.T, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSentinelFailover drains a queue through kombu's sentinel:// URL while
// the master is killed: Sentinel promotes the replica, the consumer follows
// it, and every message is delivered (some twice: at least once).
func TestSentinelFailover(t *testing.T) {
	if _, err := exec.LookPath("redis-sentinel"); err != nil {
		t.Fatalf("redis-sentinel is required (apt-get install redis-sentinel): %v", err)
	}
	dir := t.TempDir()
	common := []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir}
	master := startRedis(t, "redis-server", append([]string{"--port", fmt.Sprint(sentMasterPort)}, common...)...)
	startRedis(t, "redis-server", append([]string{"--port", fmt.Sprint(sentReplicaPort),
		"--replicaof", "127.0.0.1", fmt.Sprint(sentMasterPort)}, common...)...)
	ctx := ctxT(t)
	mc := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", sentMasterPort)})
	defer mc.Close()
	waitFor(t, "replica in sync", 30*time.Second, func() bool {
		info, err := mc.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online")
	})
	var urls []string
	for i := range 3 {
		port := sentFirstPort + i
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", port))
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %[3]s 1000\nsentinel failover-timeout %[3]s 10000\n",
			port, dir, sentMasterName, sentMasterPort)
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		startRedis(t, "redis-sentinel", conf)
		urls = append(urls, fmt.Sprintf("sentinel://127.0.0.1:%d", port))
	}
	sc := redis.NewSentinelClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", sentFirstPort)})
	defer sc.Close()
	waitFor(t, "sentinels to know the replica and each other", 60*time.Second, func() bool {
		m, err := sc.Master(ctx, sentMasterName).Result()
		return err == nil && m["num-slaves"] == "1" && m["num-other-sentinels"] == "2"
	})

	b, err := Dial(ctx, Config{
		URL: strings.Join(urls, ";"), Logger: zaptest.NewLogger(t),
		TransportOptions: map[string]string{"master_name": sentMasterName, "visibility_timeout": "3"},
		RestoreInterval:  500 * time.Millisecond, ReconnectMax: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const n = 300
	for i := range n {
		if err := b.Publish(ctx, "", "celery", task(fmt.Sprint(i), uint8(i%10))); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Client().Do(ctx, "WAIT", 1, 5000).Err(); err != nil {
		t.Fatal(err)
	}
	c, err := b.NewConsumer(ctx, ConsumerConfig{Queues: []string{"celery"}, Prefetch: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seen := map[string]int{}
	killed := false
	deadline := time.After(120 * time.Second)
	for len(seen) < n {
		select {
		case d := <-c.Deliveries():
			seen[d.Raw().Headers["id"].(string)]++
			if err := d.Ack(); err != nil {
				t.Logf("ack across the failover: %v", err)
			}
			if len(seen) == n/3 && !killed {
				killed = true
				_ = master.Process.Kill()
				t.Log("master killed")
			}
		case <-deadline:
			t.Fatalf("%d of %d messages delivered after the failover", len(seen), n)
		}
	}
	dups := 0
	for _, k := range seen {
		dups += k - 1
	}
	// The sentinel asked may learn of the promotion after the drain
	// ended: wait for it rather than read it once.
	var addr []string
	promoted := time.Now().Add(60 * time.Second)
	for {
		addr, err = sc.GetMasterAddrByName(ctx, sentMasterName).Result()
		if err == nil && addr[1] == fmt.Sprint(sentReplicaPort) {
			break
		}
		if time.Now().After(promoted) {
			t.Fatalf("replica not promoted: %v %v", addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("all %d delivered, %d twice; master now %v", n, dups, addr)
}

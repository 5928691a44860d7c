package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/internal/rmqnode"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result/redisbackend"
)

// cluster makes the harness's node one of three, runs a worker on a quorum
// queue through a failover list starting with a node it then kills with
// SIGKILL, and checks that the drain completes without loss.
func (h *harness) cluster(ctx context.Context) (line, error) {
	home := filepath.Join(os.TempDir(), "rmqnode-home-"+strings.TrimSuffix(h.node.Name(), "@localhost"))
	extra := make([]*rmqnode.Node, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range extra {
		wg.Add(1)
		go func() {
			defer wg.Done()
			extra[i], errs[i] = rmqnode.Start(ctx, rmqnode.Config{Name: fmt.Sprintf("gwchaos%dc%d", h.o.port, i+1),
				Port: h.o.port + 1 + i, DistPort: h.o.distPort + 1 + i, Home: home, StartTimeout: 4 * time.Minute})
		}()
	}
	wg.Wait()
	defer func() {
		for _, n := range extra {
			if n != nil {
				_ = n.Remove(context.Background())
			}
		}
	}()
	for _, err := range errs {
		if err != nil {
			return line{}, err
		}
	}
	for _, n := range extra {
		if err := n.Join(ctx, h.node); err != nil {
			return line{}, err
		}
	}
	victim, b1, b2 := extra[0], extra[1], h.node
	queue := "chaos-cluster"
	oraclePath := filepath.Join(h.dir, queue+".oracle")
	b, err := amqptransport.Dial(ctx, amqptransport.Config{URL: b1.URL() + ";" + b2.URL(),
		DefaultQueueType: amqptransport.QueueTypeQuorum, ConnectionName: "gworker-chaos"})
	if err != nil {
		return line{}, err
	}
	defer b.Close()
	rb, err := redisbackend.Open(h.o.redis, redisbackend.Options{Expires: time.Hour})
	if err != nil {
		return line{}, err
	}
	defer rb.Close()
	if err := b.DeclareTaskQueue(ctx, queue); err != nil {
		return line{}, err
	}
	p := producer.New(b, producer.Options{Backend: rb, DefaultQueue: queue})
	ids, err := h.publish(ctx, p, h.o.n, work)
	defer forget(rb, ids)
	if err != nil {
		return line{}, err
	}
	w, err := h.startOn(queue, oraclePath, true, h.o.redis,
		strings.Join([]string{victim.URL(), b1.URL(), b2.URL()}, ";"), true)
	if err != nil {
		return line{}, err
	}
	defer func() { w.kill() }()
	// Kill once the worker is busy on the victim.
	for end := time.Now().Add(time.Minute); ; {
		o, err := readOracle(oraclePath)
		if err != nil {
			return line{}, err
		}
		if len(o.done) > 0 || time.Now().After(end) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Duration(500+rand.IntN(1000)) * time.Millisecond)
	if err := victim.Kill(); err != nil {
		return line{}, err
	}
	o, err := waitAllDone(w, oraclePath, len(ids), 3*time.Minute)
	if err != nil {
		w.kill()
		return line{}, err
	}
	w.kill()
	lost, unexpected := o.tally(ids)
	dup := sum(o.done) - len(o.done)
	extraRuns := sum(o.start) - len(o.done)
	bound := concurrency * (1 + prefetchMul)
	pass := lost == 0 && unexpected == 0 && extraRuns <= bound
	return line{fmt.Sprintf("cluster nodes=3 queue=quorum N=%d faults=1 lost=%d dup=%d extra=%d unexpected=%d bound=%d %s",
		h.o.n, lost, dup, extraRuns, unexpected, bound, verdict(pass)), pass}, nil
}

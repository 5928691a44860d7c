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
	"github.com/gworker/gworker/internal/testing/rmqnode"
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
	r, err := h.openOn(ctx, "cluster", h.o.redis, amqptransport.Config{URL: b1.URL() + ";" + b2.URL(),
		DefaultQueueType: amqptransport.QueueTypeQuorum})
	if err != nil {
		return line{}, err
	}
	defer r.close()
	if err := r.publish(ctx, h.o.n, work); err != nil {
		return line{}, err
	}
	w, err := h.startOn(r.queue, r.oracle, true, h.o.redis,
		strings.Join([]string{victim.URL(), b1.URL(), b2.URL()}, ";"), true)
	if err != nil {
		return line{}, err
	}
	defer func() { w.kill() }()
	// Kill once the worker is busy on the victim.
	if err := waitOracle(r.oracle, time.Minute, "a first task done", func(o oracle) bool { return len(o.done) > 0 }); err != nil {
		return line{}, err
	}
	time.Sleep(time.Duration(500+rand.IntN(1000)) * time.Millisecond)
	if err := victim.Kill(); err != nil {
		return line{}, err
	}
	o, err := waitAllDone(w, r.oracle, len(r.ids), 3*time.Minute)
	if err != nil {
		w.kill()
		return line{}, err
	}
	w.kill()
	c := o.tally(r.ids)
	bound := concurrency * (1 + prefetchMul)
	pass := c.lost == 0 && c.unexpected == 0 && c.extra <= bound
	return line{fmt.Sprintf("cluster nodes=3 queue=quorum N=%d faults=1 lost=%d dup=%d extra=%d unexpected=%d bound=%d %s",
		h.o.n, c.lost, c.dup, c.extra, c.unexpected, bound, verdict(pass)), pass}, nil
}

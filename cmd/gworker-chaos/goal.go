package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result/redisbackend"
)

// goalRun is one goal's queue, the oracle file its workers write, and the
// clients that publish to the queue and read results.
type goalRun struct {
	queue, oracle string
	b             *amqptransport.Broker
	rb            *redisbackend.Backend
	p             *producer.Producer
	ids           map[string]bool // every task published; close forgets their results
}

// open declares the queue chaos-<name> on the harness's node and opens a
// goal's clients, with the harness's result store.
func (h *harness) open(ctx context.Context, name string) (*goalRun, error) {
	return h.openOn(ctx, name, h.o.redis, amqptransport.Config{})
}

// openOn is open with the broker dialled with cfg (on the harness's node
// when cfg.URL is empty) and the result store at redis.
func (h *harness) openOn(ctx context.Context, name, redis string, cfg amqptransport.Config) (*goalRun, error) {
	if cfg.URL == "" {
		cfg.URL = h.node.URL()
	}
	cfg.ConnectionName = "gworker-chaos"
	b, err := amqptransport.Dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	rb, err := redisbackend.Open(redis, redisbackend.Options{Expires: time.Hour})
	if err != nil {
		b.Close()
		return nil, err
	}
	queue := "chaos-" + name
	if err := b.DeclareTaskQueue(ctx, queue); err != nil {
		b.Close()
		rb.Close()
		return nil, err
	}
	return &goalRun{queue: queue, oracle: filepath.Join(h.dir, queue+".oracle"), b: b, rb: rb,
		p: producer.New(b, producer.Options{Backend: rb, DefaultQueue: queue}), ids: map[string]bool{}}, nil
}

// close forgets the results of the tasks published (giving up at the
// first error: the store may be down) and closes the clients.
func (r *goalRun) close() {
	for id := range r.ids {
		if r.rb.Forget(context.Background(), id) != nil {
			break
		}
	}
	r.rb.Close()
	r.b.Close()
}

// publish sends n tasks, task(i) naming the i-th and its options (its one
// argument is i).
func (r *goalRun) publish(ctx context.Context, n int, task func(i int) (string, []producer.Option)) error {
	for i := 0; i < n; i++ {
		name, opts := task(i)
		if _, err := r.send(ctx, name, []any{i}, opts...); err != nil {
			return err
		}
	}
	return nil
}

// send publishes one task and returns its id.
func (r *goalRun) send(ctx context.Context, name string, args []any, opts ...producer.Option) (string, error) {
	res, err := r.p.SendTask(ctx, name, args, nil, opts...)
	if err != nil {
		return "", fmt.Errorf("publish: %w", err)
	}
	r.ids[res.ID()] = true
	return res.ID(), nil
}

// work is the task most goals publish: chaos.work(i).
func work(int) (string, []producer.Option) { return "chaos.work", nil }

// exitedOnItsOwn says, without waiting, whether the worker process has
// ended though nobody killed it.
func (p *proc) exitedOnItsOwn() error {
	select {
	case err := <-p.done:
		p.done <- err // for kill
		return fmt.Errorf("the worker exited on its own: %v", err)
	default:
		return nil
	}
}

// waitOracle reads the oracle until cond holds; it fails after timeout,
// saying what it waited for.
func waitOracle(path string, timeout time.Duration, what string, cond func(oracle) bool) error {
	for end := time.Now().Add(timeout); ; {
		o, err := readOracle(path)
		if err != nil {
			return err
		}
		if cond(o) {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("waited %s for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// counts is what a drain's oracle says of the published ids.
type counts struct {
	lost        int // published, never done
	lostStarted int // of those, started before a kill
	unexpected  int // ran without having been published
	dup         int // done more than once
	extra       int // runs beyond one per done id
}

func (o oracle) tally(ids map[string]bool) counts {
	var c counts
	for id := range ids {
		if o.done[id] == 0 {
			c.lost++
			if o.start[id] > 0 {
				c.lostStarted++
			}
		}
	}
	for id := range o.start {
		if !ids[id] {
			c.unexpected++
		}
	}
	c.dup = sum(o.done) - len(o.done)
	c.extra = sum(o.start) - len(o.done)
	return c
}

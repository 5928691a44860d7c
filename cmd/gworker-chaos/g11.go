package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/result"
)

// redisProc is a private redis-server on loopback whose data survives a
// kill (append-only file, fsync on every write).
type redisProc struct {
	port int
	dir  string
	cmd  *exec.Cmd
	done chan error
}

func startRedis(ctx context.Context, port int, dir string) (*redisProc, error) {
	r := &redisProc{port: port, dir: dir}
	return r, r.start(ctx)
}

func (r *redisProc) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *redisProc) start(ctx context.Context) error {
	log, err := os.OpenFile(filepath.Join(r.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", r.dir)
	cmd.Stdout, cmd.Stderr = log, log
	ownGroup(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	r.cmd, r.done = cmd, make(chan error, 1)
	go func() { r.done <- cmd.Wait() }()
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); {
		if r.ping(ctx) {
			return nil
		}
		select {
		case err := <-r.done:
			r.done <- err
			return fmt.Errorf("redis-server on port %d exited: %v", r.port, err)
		case <-ctx.Done():
			r.kill()
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	r.kill()
	return fmt.Errorf("redis-server on port %d did not answer in 30 s", r.port)
}

func (r *redisProc) ping(ctx context.Context) bool {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", r.port))
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	l, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(l, "+PONG")
}

// kill ends redis-server with SIGKILL and waits for it.
func (r *redisProc) kill() {
	killGroup(r.cmd)
	err := <-r.done
	r.done <- err
}

// g11 kills the result store for h.o.down repeatedly while the worker drains
// acks_late tasks: the worker never exits and every id ends with a
// SUCCESS result.
func (h *harness) g11(ctx context.Context) (line, error) {
	rdir := filepath.Join(h.dir, "redis")
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		return line{}, err
	}
	rs, err := startRedis(ctx, h.o.redisPort, rdir)
	if err != nil {
		return line{}, err
	}
	defer rs.kill()
	r, err := h.openOn(ctx, "g11", rs.url(), amqptransport.Config{})
	if err != nil {
		return line{}, err
	}
	defer r.close()
	if err := r.publish(ctx, h.o.n, work); err != nil {
		return line{}, err
	}
	w, err := h.startWith(r.queue, r.oracle, true, rs.url())
	if err != nil {
		return line{}, err
	}
	defer func() { w.kill() }()
	for k := 0; k < h.o.outages; k++ {
		time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
		rs.kill()
		time.Sleep(h.o.down + time.Duration(rand.IntN(1000))*time.Millisecond)
		if err := w.exitedOnItsOwn(); err != nil {
			return line{}, err
		}
		if err := rs.start(ctx); err != nil {
			return line{}, err
		}
	}
	// Done when every id has its SUCCESS result (a task whose result could
	// not be stored runs again).
	missing := make(map[string]bool, len(r.ids))
	for id := range r.ids {
		missing[id] = true
	}
	for end := time.Now().Add(3 * time.Minute); len(missing) > 0 && time.Now().Before(end); {
		if err := w.exitedOnItsOwn(); err != nil {
			return line{}, err
		}
		for id := range missing {
			m, err := r.rb.Get(ctx, id)
			if err == nil && m.Status == result.Success {
				delete(missing, id)
			}
		}
		if len(missing) > 0 {
			time.Sleep(500 * time.Millisecond)
		}
	}
	err = w.exitedOnItsOwn()
	w.kill()
	if err != nil {
		return line{}, err
	}
	o, err := readOracle(r.oracle)
	if err != nil {
		return line{}, err
	}
	c := o.tally(r.ids)
	pass := c.lost == 0 && c.unexpected == 0 && len(missing) == 0
	return line{fmt.Sprintf("G11 N=%d outages=%d down=%s lost=%d missing_results=%d extra=%d unexpected=%d worker_exited=false %s",
		h.o.n, h.o.outages, h.o.down, c.lost, len(missing), c.extra, c.unexpected, verdict(pass)), pass}, nil
}

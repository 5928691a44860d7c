package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/gworker/gworker/result"
)

// G5's settings: the node times a delivery out after g5Timeout (checked
// every g5Tick), and chaos.block runs g5Task, several timeouts long.
const (
	g5Timeout = 2 * time.Second
	g5Tick    = 500 * time.Millisecond
	g5Task    = 8 * time.Second
)

// setEnv sets (value non-empty) or unsets a rabbit application setting of
// the running node; channels opened afterwards read it.
func (h *harness) setEnv(ctx context.Context, key, value string) error {
	expr := fmt.Sprintf("application:unset_env(rabbit, %s).", key)
	if value != "" {
		expr = fmt.Sprintf("application:set_env(rabbit, %s, %s).", key, value)
	}
	_, err := h.node.Ctl(ctx, "eval", expr)
	return err
}

// getEnv returns a rabbit application setting, "" when unset.
func (h *harness) getEnv(ctx context.Context, key string) (string, error) {
	out, err := h.node.Ctl(ctx, "eval", fmt.Sprintf("application:get_env(rabbit, %s).", key))
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(out))
	if rest, ok := strings.CutPrefix(v, "{ok,"); ok {
		return strings.TrimSuffix(rest, "}"), nil
	}
	return "", nil
}

// g5 runs an acks_late task longer than the node's consumer_timeout: the
// broker closes the worker's channel (and requeues the delivery) each
// time; the worker must not exit, must reopen its channel and settle the
// redelivered copies without running the task again, and store its one
// result.
func (h *harness) g5(ctx context.Context) (line, error) {
	settings := map[string]string{
		"consumer_timeout":      fmt.Sprint(g5Timeout.Milliseconds()),
		"channel_tick_interval": fmt.Sprint(g5Tick.Milliseconds()),
	}
	for key, v := range settings {
		old, err := h.getEnv(ctx, key)
		if err != nil {
			return line{}, err
		}
		defer func() { _ = h.setEnv(context.Background(), key, old) }()
		if err := h.setEnv(ctx, key, v); err != nil {
			return line{}, err
		}
	}
	logStart := 0
	if fi, err := os.Stat(h.node.LogPath()); err == nil {
		logStart = int(fi.Size())
	}
	r, err := h.open(ctx, "g5")
	if err != nil {
		return line{}, err
	}
	defer r.close()
	id, err := r.send(ctx, "chaos.block", nil)
	if err != nil {
		return line{}, err
	}
	w, err := h.start(r.queue, r.oracle, true)
	if err != nil {
		return line{}, err
	}
	defer func() { w.kill() }()
	status := "none"
	for end := time.Now().Add(g5Task + 2*time.Minute); time.Now().Before(end) && w.exitedOnItsOwn() == nil; {
		if m, err := r.rb.Get(ctx, id); err == nil && m.Status.Ready() {
			status = string(m.Status)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Longer than a timeout: a copy left unsettled would be delivered
	// again and run.
	time.Sleep(2 * g5Timeout)
	dead := w.exitedOnItsOwn() != nil
	w.kill()
	o, err := readOracle(r.oracle)
	if err != nil {
		return line{}, err
	}
	st, err := r.b.Inspect(ctx, r.queue)
	if err != nil {
		return line{}, err
	}
	timeouts := 0
	if data, err := os.ReadFile(h.node.LogPath()); err == nil && len(data) >= logStart {
		timeouts = strings.Count(string(data[logStart:]), "delivery acknowledgement on channel")
	}
	runs := o.start[id]
	pass := timeouts >= 1 && runs == 1 && status == string(result.Success) && st.Messages == 0 && !dead
	return line{fmt.Sprintf("G5 consumer_timeout=%s task=%s timeouts=%d runs=%d result=%s left_in_queue=%d worker_exited=%v %s",
		g5Timeout, g5Task, timeouts, runs, status, st.Messages, dead, verdict(pass)), pass}, nil
}

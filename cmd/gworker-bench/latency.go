package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// latencyClient is the Python client of latency mode: one Celery 5.2.6
// client that calls add.delay(i, i).get() n times in a row, after warmup
// unmeasured calls, checks every value, forgets every result once it is
// measured, and prints the round trips (µs) as JSON, by queue. Given
// several queues (comma-separated), it sends call i to each of them in
// turn, starting with a different one each time, so that every queue's
// worker is measured over the same stretch of time
// (-latency-interleave).
const latencyClient = `import json, sys, time
from celery import Celery

broker, backend, n, warmup = sys.argv[1], sys.argv[2], int(sys.argv[4]), int(sys.argv[5])
queues = sys.argv[3].split(",")
app = Celery("benchclient", broker=broker, backend=backend)
app.conf.task_default_queue = queues[0]


@app.task(name="tasks.add")
def add(x, y):
    return x + y


def call(i, queue):
    t0 = time.perf_counter()
    r = add.apply_async((i, i), queue=queue)
    v = r.get(timeout=30)
    t1 = time.perf_counter()
    r.forget()
    if v != 2 * i:
        sys.exit("task %d: got %r, want %d" % (i, v, 2 * i))
    return (t1 - t0) * 1e6


def turn(i):
    k = i % len(queues)
    return queues[k:] + queues[:k]


for i in range(warmup):
    for q in turn(i):
        call(i, q)
out = {q: [] for q in queues}
for i in range(n):
    for q in turn(i):
        out[q].append(call(i, q))
print(json.dumps({"round_trips_us": out}))
`

// runLatencyClient runs the Python client against queues, calling each
// in turn, and returns the round trips in µs by queue.
func runLatencyClient(ctx context.Context, o *options, dir string, queues ...string) (map[string][]float64, error) {
	cmd := exec.CommandContext(ctx, o.python, "benchclient.py", o.brokerURL, o.redisURL, strings.Join(queues, ","),
		strconv.Itoa(o.latencyN), strconv.Itoa(o.latencyWarmup))
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("latency client: %v: %s", err, lastLines(stderr.String(), 10))
	}
	var out struct {
		RoundTrips map[string][]float64 `json:"round_trips_us"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("latency client output: %v: %.300s", err, stdout.String())
	}
	for _, q := range queues {
		if n := len(out.RoundTrips[q]); n != o.latencyN {
			return nil, fmt.Errorf("latency client: %d round trips on %s, want %d", n, q, o.latencyN)
		}
	}
	return out.RoundTrips, nil
}

// percentile returns the p-th percentile (0 < p ≤ 100) of v by the
// nearest-rank method.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	k := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(k, 0), len(s)-1)]
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// runLatencyInterleaved is latency mode with -latency-interleave: every
// worker of specs runs at once on a queue of its own, and one client sends
// each call to every queue in turn, so that a busy spell of the machine
// falls on all of them alike instead of on whichever ran then. Each
// worker's CPU time, system calls and context switches cover the whole
// window (its idle time while the others answer included, the same for
// all); the servers' CPU cannot be told apart by worker and is left out.
func runLatencyInterleaved(parent context.Context, o *options, bb benchBroker, specs []workerSpec, logDir string, round int) []sample {
	samples := make([]sample, len(specs))
	for i, sp := range specs {
		samples[i] = sample{Round: round, Mode: "latency", Worker: sp.name, Tasks: o.latencyN}
	}
	failAll := func(err error) []sample {
		for i := range samples {
			if samples[i].Err == "" {
				samples[i].Err = err.Error()
			}
		}
		return samples
	}
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	ctx, cancelT := context.WithTimeoutCause(ctx, o.timeout, fmt.Errorf("run limit %v reached", o.timeout))
	defer cancelT()

	queues := make([]string, len(specs))
	procs := make([]*proc, len(specs))
	rss := make([]*rssSampler, len(specs))
	defer func() {
		for i, p := range procs {
			if p == nil {
				continue
			}
			peak := rss[i].Stop()
			if samples[i].RSSMB == 0 {
				samples[i].RSSMB, samples[i].AnonMB = float64(peak)/(1<<20), float64(rss[i].PeakAnon())/(1<<20)
			}
			if err := p.stop(30 * time.Second); err != nil && samples[i].Err == "" {
				samples[i].Err = err.Error()
			}
		}
		for _, q := range queues {
			if q != "" {
				bb.remove(q)
			}
		}
	}()
	for i, sp := range specs {
		q := fmt.Sprintf("bench.%s.latency.r%d.%s", sp.name, round, randomHex(3))
		if err := bb.declare(q); err != nil {
			return failAll(err)
		}
		queues[i] = q
		p, err := startWorker(sp, q, logDir, round, "latency")
		if err != nil {
			return failAll(err)
		}
		procs[i] = p
		rss[i] = sampleRSS(p.pid(), 50*time.Millisecond)
		go func() {
			select {
			case err := <-p.done:
				p.done <- err
				cancel(fmt.Errorf("%s exited early (%v):\n%s", sp.name, err, p.tail()))
			case <-ctx.Done():
			}
		}()
	}
	for i, q := range queues {
		if err := bb.waitConsumer(ctx, q); err != nil {
			return failAll(fmt.Errorf("%w:\n%s", err, procs[i].tail()))
		}
	}
	cpu0 := make([]time.Duration, len(specs))
	cnt0 := make([]counters, len(specs))
	for i, p := range procs {
		cpu0[i], cnt0[i] = treeCPU(p.pid()), treeCounters(p.pid())
	}
	rts, err := runLatencyClient(ctx, o, logDir, queues...)
	if err != nil {
		if c := context.Cause(ctx); c != nil && c != err {
			err = fmt.Errorf("%w (%v)", err, c)
		}
		return failAll(err)
	}
	for i, p := range procs {
		cpu1, cnt1 := treeCPU(p.pid()), treeCounters(p.pid())
		s := &samples[i]
		rt := rts[queues[i]]
		s.P50us, s.P90us, s.P99us = percentile(rt, 50), percentile(rt, 90), percentile(rt, 99)
		for _, v := range rt {
			s.Seconds += v / 1e6
		}
		if s.Seconds > 0 {
			s.TasksPerS = float64(s.Tasks) / s.Seconds
		}
		s.CPUus = float64((cpu1 - cpu0[i]).Microseconds()) / float64(s.Tasks)
		s.Syscalls = float64(cnt1.rw-cnt0[i].rw) / float64(s.Tasks)
		s.Switches = float64(cnt1.switches-cnt0[i].switches) / float64(s.Tasks)
	}
	return samples
}

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
)

// latencyClient is the Python client of latency mode: one Celery 5.2.6
// client that calls add.delay(i, i).get() n times in a row, after warmup
// unmeasured calls, checks every value, forgets every result once it is
// measured, and prints the round trips (µs) as JSON.
const latencyClient = `import json, sys, time
from celery import Celery

broker, backend, queue, n, warmup = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
app = Celery("benchclient", broker=broker, backend=backend)
app.conf.task_default_queue = queue


@app.task(name="tasks.add")
def add(x, y):
    return x + y


def call(i):
    t0 = time.perf_counter()
    r = add.delay(i, i)
    v = r.get(timeout=30)
    t1 = time.perf_counter()
    r.forget()
    if v != 2 * i:
        sys.exit("task %d: got %r, want %d" % (i, v, 2 * i))
    return (t1 - t0) * 1e6


for i in range(warmup):
    call(i)
print(json.dumps({"round_trips_us": [call(i) for i in range(n)]}))
`

// runLatencyClient runs the Python client against queue and returns its
// round trips in µs.
func runLatencyClient(ctx context.Context, o *options, dir, queue string) ([]float64, error) {
	cmd := exec.CommandContext(ctx, o.python, "benchclient.py", o.brokerURL, o.redisURL, queue,
		strconv.Itoa(o.latencyN), strconv.Itoa(o.latencyWarmup))
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("latency client: %v: %s", err, lastLines(stderr.String(), 10))
	}
	var out struct {
		RoundTrips []float64 `json:"round_trips_us"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("latency client output: %v: %.300s", err, stdout.String())
	}
	if len(out.RoundTrips) != o.latencyN {
		return nil, fmt.Errorf("latency client: %d round trips, want %d", len(out.RoundTrips), o.latencyN)
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

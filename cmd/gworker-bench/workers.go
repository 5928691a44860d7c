package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// celeryModule is the task module the Celery worker imports: tasks.add, as
// in Celery's documentation, with the broker and backend from the
// environment.
const celeryModule = `import os
from celery import Celery

app = Celery("benchtasks")
app.conf.broker_url = os.environ["GWORKER_BENCH_BROKER"]
app.conf.result_backend = os.environ["GWORKER_BENCH_BACKEND"]


@app.task(name="tasks.add")
def add(x, y):
    return x + y
`

// workerSpec says how to start one kind of worker on a queue.
type workerSpec struct {
	name string
	cmd  func(queue string) *exec.Cmd
	// noResults: the worker stores no result (bare-ack); it publishes on
	// notifyChannel(queue) instead.
	noResults bool
}

// notifyChannel is the Redis channel a bare-ack consumer of queue
// publishes its progress on.
func notifyChannel(queue string) string { return "gworker-bench-bare-ack." + queue }

// proc is a running worker process (with its children).
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan error
}

func startWorker(spec workerSpec, queue, logDir string, round int, mode string) (*proc, error) {
	cmd := spec.cmd(queue)
	logPath := filepath.Join(logDir, fmt.Sprintf("%s-%s-r%d.log", spec.name, mode, round))
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	// A process group of its own, so that stop can reach prefork
	// children if the parent does not take them down.
	ownGroup(cmd)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", spec.name, err)
	}
	p := &proc{name: spec.name, cmd: cmd, log: logPath, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop asks for a warm shutdown (SIGTERM) and kills the process group if
// it has not exited within grace.
func (p *proc) stop(grace time.Duration) error {
	terminate(p.cmd)
	select {
	case err := <-p.done:
		p.done <- err
		// Children left behind (they should not be) go with the group.
		killGroup(p.cmd)
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			return err
		}
		return nil
	case <-time.After(grace):
		killGroup(p.cmd)
		<-p.done
		return fmt.Errorf("%s did not stop within %v; killed", p.name, grace)
	}
}

// tail returns the last lines of the worker's log, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

type specConfig struct {
	gworker, python, self string
	brokerURL, backendURL string
	redisURL              string // the bare-ack ceiling's notifications
	conc, prefetchMult    int
	celeryConc            int
	loglevel              string
	moduleDir             string
	minloopGlobalQoS      bool
	extra                 []string // more gworker worker flags
	n                     int      // tasks per run
}

func gworkerSpec(c specConfig) workerSpec {
	return workerSpec{name: "gworker", cmd: func(queue string) *exec.Cmd {
		args := []string{"worker", "-b", c.brokerURL, "--result-backend", c.backendURL,
			"-Q", queue, "-c", strconv.Itoa(c.conc), "--prefetch-multiplier", strconv.Itoa(c.prefetchMult),
			"-l", c.loglevel}
		return exec.Command(c.gworker, append(args, c.extra...)...)
	}}
}

func minloopSpec(c specConfig) workerSpec {
	return workerSpec{name: "minloop", cmd: func(queue string) *exec.Cmd {
		return exec.Command(c.self, "minloop", "-broker", c.brokerURL, "-result-backend", c.backendURL,
			"-queue", queue, "-c", strconv.Itoa(c.conc), "-prefetch", strconv.Itoa(c.conc*c.prefetchMult),
			"-global-qos="+strconv.FormatBool(c.minloopGlobalQoS))
	}}
}

func bareAckSpec(c specConfig) workerSpec {
	return workerSpec{name: "bare-ack", noResults: true, cmd: func(queue string) *exec.Cmd {
		return exec.Command(c.self, "bare-ack", "-broker", c.brokerURL, "-redis", c.redisURL,
			"-notify", notifyChannel(queue), "-n", strconv.Itoa(c.n),
			"-queue", queue, "-prefetch", strconv.Itoa(c.conc*c.prefetchMult),
			"-global-qos="+strconv.FormatBool(c.minloopGlobalQoS))
	}}
}

func celerySpec(c specConfig) workerSpec {
	return workerSpec{name: "celery", cmd: func(queue string) *exec.Cmd {
		cmd := exec.Command(c.python, "-m", "celery", "-A", "benchtasks", "worker", "-P", "prefork",
			"-c", strconv.Itoa(c.celeryConc), "-Q", queue,
			"--without-mingle", "--without-gossip", "--without-heartbeat", "-l", c.loglevel)
		cmd.Dir = c.moduleDir
		cmd.Env = append(os.Environ(), "GWORKER_BENCH_BROKER="+c.brokerURL,
			"GWORKER_BENCH_BACKEND="+c.backendURL, "PYTHONPATH="+c.moduleDir)
		return cmd
	}}
}

// gworkerBinary finds the gworker binary: the flag, then a gworker next to
// this program, then one built from the module this program runs in, as
// the Dockerfile builds it (static, CGO_ENABLED=0), with the build tags
// tags.
func gworkerBinary(ctx context.Context, flagPath, tags, tmp string) (string, error) {
	if flagPath != "" {
		return flagPath, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "gworker")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	out := filepath.Join(tmp, "gworker")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", tags, "-o", out, "github.com/gworker/gworker/cmd/gworker")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("no gworker binary given (-gworker) and go build failed: %v\n%s", err, b)
	}
	return out, nil
}

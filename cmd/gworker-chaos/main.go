// Command gworker-chaos injects faults into a gworker worker running
// against a private RabbitMQ node and checks that nothing is lost, printing
// one line per goal:
//
//	G1 N=2000 faults=10 lost=0 dup=0 extra=37 bound=120 PASS
//
// It never touches the machine's shared broker: it starts its own node on
// loopback ports (-port, -dist-port) with rabbitmq-server, and stops it at
// the end. Results go to Redis (-redis) under keys it deletes afterwards.
// The oracle is outside the fault domain: the worker processes append
// "start ID" and "done ID" lines to a file, and every published task id is
// confirmed by the broker before it counts.
//
// Goals (see the project's reliability notes for their full statement):
//
//   - G1: the worker process group is killed with SIGKILL -faults times
//     while it drains -n acks_late tasks, and restarted each time:
//     lost = 0, no id done that was not published, and the runs beyond
//     the first (extra) stay within the deliveries the killed workers held
//     (faults × (concurrency + prefetch)).
//
//   - G3: the broker is restarted (stop_app, 2-5 s down, start_app)
//     -restarts times while the worker drains -n acks_late tasks: the same
//     criteria as G1, and the worker process never exits.
//
//   - G2: the same kills with early acknowledgement (the default):
//     no task runs twice (dup = 0), and lost stays within the tasks the
//     killed workers were running (faults × concurrency): at-most-once
//     for started tasks.
//
//   - G7: a task that kills its worker every time runs at most
//     1 + max-redeliveries times, then fails with WorkerLostError and its
//     message leaves the queue.
//
//   - G12: SIGTERM while concurrency tasks run, more are prefetched and
//     ETA tasks are held: the running ones finish (and are acknowledged)
//     before the process exits, within the grace period; everything else
//     is back in the queue, and the next worker runs it: lost = 0,
//     dup = 0.
//
//   - G11: the result store (a private redis-server, -redis-port) is
//     killed for -outage -outages times while the worker drains acks_late
//     tasks: the worker never exits, and every id ends with a SUCCESS
//     result (a task whose result could not be stored goes back to the
//     queue instead of being acknowledged).
//
//   - cluster (not in the default list: it starts two more nodes): the
//     node becomes one of a three-node cluster, the worker consumes a
//     quorum queue through a failover list and the node it is connected to
//     is killed with SIGKILL: lost = 0, re-runs within what the worker
//     held, the worker never exits.
//
//   - G4: an in-process toxiproxy between the worker and the node
//     injects -net-faults random faults (reset_peer, a blackhole, 2 s
//     latency, 10 kB/s) while the worker drains acks_late tasks, with a
//     2 s heartbeat: as G1, and no acknowledgement with a stale delivery
//     tag reaches the broker.
//
//   - G5: an acks_late task runs several times the node's
//     consumer_timeout (set on the running node for this goal only): the
//     broker closes the worker's channel each time; the worker does not
//     exit, the task runs once and its one result is SUCCESS.
//
// CHAOS_KEEP=1 keeps the temporary directory (worker log, oracle files).
//
//	go run ./cmd/gworker-chaos -n 2000 -faults 10
//
// The exit status is 1 when a goal fails.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/internal/testing/rmqnode"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
	"github.com/gworker/gworker/worker"
)

// workerEnv, when set, makes the binary a chaos worker process (the
// harness starts itself again with it).
const workerEnv = "GWORKER_CHAOS_WORKER"

// Worker settings the bounds depend on.
const (
	concurrency = 4
	prefetchMul = 2
	poisonMax   = 3
	exitCode    = 3
	// grace is how long a worker given SIGTERM waits for its running
	// tasks before abandoning them (Celery's warm shutdown has no limit;
	// supervisors usually allow 30 s).
	grace = 30 * time.Second
	// slowTask is how long chaos.slow runs.
	slowTask = 3 * time.Second
)

func main() {
	if os.Getenv(workerEnv) != "" {
		os.Exit(runWorker())
	}
	var o options
	flag.IntVar(&o.n, "n", 2000, "tasks of G1")
	flag.IntVar(&o.faults, "faults", 10, "worker kills of G1")
	flag.IntVar(&o.restarts, "restarts", 3, "broker restarts of G3")
	flag.IntVar(&o.outages, "outages", 5, "result-store outages of G11")
	flag.DurationVar(&o.down, "outage", 10*time.Second, "how long each G11 outage lasts (plus up to 1 s)")
	flag.IntVar(&o.netFaults, "net-faults", 50, "network faults of G4")
	flag.DurationVar(&o.netDown, "net-fault", 5*time.Second, "how long each G4 fault lasts (up to twice that)")
	flag.IntVar(&o.eta, "eta", 100, "ETA tasks held at G12's SIGTERM")
	flag.StringVar(&o.goals, "goals", "G1,G2,G3,G7,G12,G11,G5,G4", "goals to run, comma-separated")
	flag.IntVar(&o.port, "port", 5700, "AMQP port of the private RabbitMQ node")
	flag.IntVar(&o.distPort, "dist-port", 25700, "Erlang distribution port of the private node")
	flag.IntVar(&o.redisPort, "redis-port", 6450, "port of G11's private redis-server")
	flag.StringVar(&o.redis, "redis", "redis://127.0.0.1:6379/0", "Redis for results")
	flag.Parse()
	lines, err := run(context.Background(), o, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gworker-chaos:", err)
		os.Exit(2)
	}
	for _, l := range lines {
		if !l.pass {
			os.Exit(1)
		}
	}
}

type options struct {
	n, faults      int
	restarts       int
	outages, eta   int
	redisPort      int
	down           time.Duration
	netFaults      int
	netDown        time.Duration
	goals          string
	port, distPort int
	redis          string
	// self is the executable started as the worker; empty means this one.
	self string
}

// line is one goal's outcome.
type line struct {
	text string
	pass bool
}

// run starts the private node, runs the goals and prints a line per goal.
func run(ctx context.Context, o options, out *os.File) ([]line, error) {
	if o.self == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		o.self = exe
	}
	dir, err := os.MkdirTemp("", "gworker-chaos-")
	if err != nil {
		return nil, err
	}
	if os.Getenv("CHAOS_KEEP") == "" {
		defer os.RemoveAll(dir)
	}
	node, err := rmqnode.Start(ctx, rmqnode.Config{Name: fmt.Sprintf("gwchaos%d", o.port), Port: o.port, DistPort: o.distPort})
	if err != nil {
		return nil, err
	}
	defer node.Remove(context.Background())
	h := &harness{o: o, dir: dir, node: node}
	var lines []line
	for _, g := range strings.Split(o.goals, ",") {
		var l line
		switch strings.TrimSpace(g) {
		case "G1":
			l, err = h.g1(ctx)
		case "G3":
			l, err = h.g3(ctx)
		case "G2":
			l, err = h.g2(ctx)
		case "G4":
			l, err = h.g4(ctx)
		case "G5":
			l, err = h.g5(ctx)
		case "G7":
			l, err = h.g7(ctx)
		case "cluster":
			l, err = h.cluster(ctx)
		case "G11":
			l, err = h.g11(ctx)
		case "G12":
			l, err = h.g12(ctx)
		default:
			return lines, fmt.Errorf("unknown goal %q", g)
		}
		if err != nil {
			return lines, fmt.Errorf("%s: %w", g, err)
		}
		fmt.Fprintln(out, l.text)
		lines = append(lines, l)
	}
	return lines, nil
}

type harness struct {
	// heartbeat, when not zero, is the AMQP heartbeat of the workers
	// started next.
	heartbeat time.Duration
	o         options
	dir       string
	node      *rmqnode.Node
}

// proc is a running chaos worker process, in a process group of its own.
type proc struct {
	cmd  *exec.Cmd
	done chan error
	once sync.Once
}

func (h *harness) start(queue, oracle string, acksLate bool) (*proc, error) {
	return h.startWith(queue, oracle, acksLate, h.o.redis)
}

func (h *harness) startWith(queue, oracle string, acksLate bool, redis string) (*proc, error) {
	return h.startOn(queue, oracle, acksLate, redis, h.node.URL(), false)
}

// startOn starts a worker on broker (a ";"-separated failover list),
// declaring quorum queues when quorum is set.
func (h *harness) startOn(queue, oracle string, acksLate bool, redis, broker string, quorum bool) (*proc, error) {
	cmd := exec.Command(h.o.self)
	cmd.Env = append(os.Environ(), workerEnv+"=1", "CHAOS_BROKER="+broker, "CHAOS_REDIS="+redis,
		"CHAOS_QUORUM="+strconv.FormatBool(quorum), "CHAOS_HEARTBEAT="+h.heartbeat.String(),
		"CHAOS_QUEUE="+queue, "CHAOS_ORACLE="+oracle, "CHAOS_ACKS_LATE="+strconv.FormatBool(acksLate))
	log, err := os.OpenFile(filepath.Join(h.dir, "worker.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	ownGroup(cmd)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	return p, nil
}

// kill ends the worker's process group with SIGKILL and waits for it; it
// may be called again.
func (p *proc) kill() {
	p.once.Do(func() {
		killGroup(p.cmd)
		<-p.done
	})
}

// oracle counts the lines a worker wrote: starts and dones per id.
type oracle struct{ start, done map[string]int }

func readOracle(path string) (oracle, error) {
	o := oracle{start: map[string]int{}, done: map[string]int{}}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return o, nil
	}
	if err != nil {
		return o, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		kind, id, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue // a line cut short by a kill
		}
		switch kind {
		case "start":
			o.start[id]++
		case "done":
			o.done[id]++
		}
	}
	return o, sc.Err()
}

// waitAllDone reads the oracle until every one of n ids is done or
// timeout passes; it fails when the worker exits on its own first.
func waitAllDone(w *proc, path string, n int, timeout time.Duration) (oracle, error) {
	for end := time.Now().Add(timeout); ; {
		o, err := readOracle(path)
		if err != nil || len(o.done) >= n || time.Now().After(end) {
			return o, err
		}
		if err := w.exitedOnItsOwn(); err != nil {
			return o, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// sum adds up the counts of an oracle map.
func sum(m map[string]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}

// g1 kills the worker process group repeatedly while it drains acks_late
// tasks.
func (h *harness) g1(ctx context.Context) (line, error) {
	return h.drain(ctx, "G1", h.o.faults, func(w **proc, queue, oracle string) error {
		(*w).kill()
		var err error
		*w, err = h.start(queue, oracle, true)
		return err
	})
}

// g3 restarts the broker (stop_app, a few seconds down, start_app) while
// the worker drains acks_late tasks; the worker must never exit.
func (h *harness) g3(ctx context.Context) (line, error) {
	return h.drain(ctx, "G3", h.o.restarts, func(w **proc, queue, oracle string) error {
		if _, err := h.node.Ctl(ctx, "stop_app"); err != nil {
			return err
		}
		time.Sleep(time.Duration(2000+rand.IntN(3000)) * time.Millisecond)
		if _, err := h.node.Ctl(ctx, "start_app"); err != nil {
			return err
		}
		return h.node.WaitReady(ctx)
	})
}

// drain publishes n acks_late tasks, runs a worker and injects faults
// while it drains them; fault may replace the worker process.
func (h *harness) drain(ctx context.Context, goal string, faults int, fault func(w **proc, queue, oracle string) error) (line, error) {
	r, err := h.open(ctx, strings.ToLower(goal))
	if err != nil {
		return line{}, err
	}
	defer r.close()
	if err := r.publish(ctx, h.o.n, work); err != nil {
		return line{}, err
	}
	w, err := h.start(r.queue, r.oracle, true)
	if err != nil {
		return line{}, err
	}
	defer func() { w.kill() }()
	for k := 0; k < faults; k++ {
		time.Sleep(time.Duration(500+rand.IntN(1500)) * time.Millisecond)
		if err := fault(&w, r.queue, r.oracle); err != nil {
			return line{}, err
		}
	}
	o, err := waitAllDone(w, r.oracle, len(r.ids), 3*time.Minute)
	if err != nil {
		w.kill()
		return line{}, err
	}
	w.kill()
	c := o.tally(r.ids)
	bound := faults * concurrency * (1 + prefetchMul)
	pass := c.lost == 0 && c.unexpected == 0 && c.extra <= bound
	return line{fmt.Sprintf("%s N=%d faults=%d lost=%d dup=%d extra=%d unexpected=%d bound=%d %s",
		goal, h.o.n, faults, c.lost, c.dup, c.extra, c.unexpected, bound, verdict(pass)), pass}, nil
}

// g7 runs a task that kills its worker until the worker fails it.
func (h *harness) g7(ctx context.Context) (line, error) {
	r, err := h.open(ctx, "g7")
	if err != nil {
		return line{}, err
	}
	defer r.close()
	id, err := r.send(ctx, "chaos.exit", nil)
	if err != nil {
		return line{}, err
	}
	failed := false
	for restarts := 0; restarts <= poisonMax+2 && !failed; restarts++ {
		w, err := h.start(r.queue, r.oracle, true)
		if err != nil {
			return line{}, err
		}
		deadline := time.After(time.Minute)
	wait:
		for {
			select {
			case err := <-w.done:
				w.done <- err // for kill
				w.kill()
				break wait
			case <-deadline:
				w.kill()
				break wait
			case <-time.After(200 * time.Millisecond):
				if m, err := r.rb.Get(ctx, id); err == nil && m.Status == result.Failure {
					failed = strings.Contains(fmt.Sprint(m.Result), "WorkerLostError")
					w.kill()
					break wait
				}
			}
		}
	}
	o, err := readOracle(r.oracle)
	if err != nil {
		return line{}, err
	}
	runs := o.start[id]
	st, err := r.b.Inspect(ctx, r.queue)
	if err != nil {
		return line{}, err
	}
	pass := failed && runs <= 1+poisonMax && st.Messages == 0
	return line{fmt.Sprintf("G7 max_redeliveries=%d runs=%d failure_stored=%v left_in_queue=%d %s",
		poisonMax, runs, failed, st.Messages, verdict(pass)), pass}, nil
}

func verdict(pass bool) string {
	if pass {
		return "PASS"
	}
	return "FAIL"
}

// runWorker is the chaos worker process: chaos.work(i) sleeps 20-200 ms,
// chaos.slow(i) sleeps slowTask, chaos.exit ends the process; all write to
// the oracle file first. SIGTERM starts a warm shutdown that turns cold
// after grace.
func runWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	oracle, err := os.OpenFile(os.Getenv("CHAOS_ORACLE"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// note appends one oracle line; O_APPEND writes this small are not
	// interleaved between goroutines or processes.
	note := func(ctx context.Context, kind string) {
		if req, ok := worker.RequestFromContext(ctx); ok {
			_, _ = fmt.Fprintf(oracle, "%s %s\n", kind, req.ID)
		}
	}
	reg := worker.NewRegistry()
	if err := reg.Register("chaos.work", func(ctx context.Context, i int) (int, error) {
		note(ctx, "start")
		time.Sleep(time.Duration(20+rand.IntN(180)) * time.Millisecond)
		note(ctx, "done")
		return i, nil
	}, worker.Params("i")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := reg.Register("chaos.slow", func(ctx context.Context, i int) (int, error) {
		note(ctx, "start")
		time.Sleep(slowTask)
		note(ctx, "done")
		return i, nil
	}, worker.Params("i")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := reg.Register("chaos.block", func(ctx context.Context) error {
		note(ctx, "start")
		time.Sleep(g5Task)
		note(ctx, "done")
		return nil
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := reg.Register("chaos.exit", func(ctx context.Context) error {
		note(ctx, "start")
		os.Exit(exitCode)
		return nil
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	bcfg := amqptransport.Config{URL: os.Getenv("CHAOS_BROKER"), ConnectionName: "gworker-chaos-worker"}
	if os.Getenv("CHAOS_QUORUM") == "true" {
		bcfg.DefaultQueueType, bcfg.Heartbeat = amqptransport.QueueTypeQuorum, 5*time.Second
	}
	if hb, err := time.ParseDuration(os.Getenv("CHAOS_HEARTBEAT")); err == nil {
		bcfg.Heartbeat = hb
	}
	b, err := amqptransport.Dial(ctx, bcfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rb, err := redisbackend.Open(os.Getenv("CHAOS_REDIS"), redisbackend.Options{Expires: time.Hour})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log, _ := zap.NewDevelopment()
	w, err := worker.New(worker.Config{Registry: reg, Broker: b, Backend: rb,
		Queues: []string{os.Getenv("CHAOS_QUEUE")}, Concurrency: concurrency, PrefetchMultiplier: prefetchMul,
		AcksLate: os.Getenv("CHAOS_ACKS_LATE") == "true", MaxRedeliveries: poisonMax,
		DisableFollowups: true, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		<-ctx.Done()
		time.Sleep(grace)
		w.Terminate()
	}()
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// Command gworker-bench measures gworker against a stock Celery 5.2.6
// prefork worker, a minimal amqp091-go loop and a bare-ack consumer (the
// ceiling), on the same machine, in the same invocation, interleaved round
// by round.
//
// Every run publishes N protocol-2 tasks.add(i, i) messages (as Celery sends
// them) to a fresh queue in a vhost of its own, with results in Redis, in
// these modes:
//
//   - prefill: the queue is filled first, then the worker starts; the rate
//     is measured from the first result published to the last.
//   - e2e: the worker is started and consuming first; the rate is measured
//     from the first message published to the last result published.
//   - latency: the worker is started and consuming, then one Python Celery
//     client calls add.delay(i, i).get() N times in a row (-latency-n);
//     the round trips' p50, p90 and p99 are reported.
//
// For each run it reports tasks/s, the worker's CPU time per task (utime +
// stime of the worker process and all its descendants over the measured
// window, from /proc) and its peak RSS (the sum of VmRSS over the process
// tree, sampled every 50 ms). Every result is checked (status SUCCESS,
// value 2i) before it counts; the bare-ack consumer, which writes none,
// must have acknowledged every message and left none in the queue. It then
// prints min/median/max per worker and mode, and the ratios of gworker to
// the others against their targets.
//
//	go build -o bin/ ./cmd/gworker ./cmd/gworker-bench
//	bin/gworker-bench -n 20000 -rounds 3
//
// The vhost is created and deleted with rabbitmqctl, which must be on PATH
// (or pass -vhost to use an existing one).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "minloop" {
		os.Exit(runMinLoop(os.Args[2:], os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "bare-ack" {
		os.Exit(runBareAck(os.Args[2:], os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "held" {
		os.Exit(heldMain(os.Args[2:]))
	}
	// Interrupted, the bench stops its workers and deletes what it
	// created before exiting.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type options struct {
	n, rounds          int
	workers, modes     []string
	conc, prefetchMult int
	celeryConc         int
	amqpBase           string
	redisURL           string
	resultBackend      string
	transport          string
	redisBroker        string
	vhost              string
	gworker, python    string
	gworkerTags        string
	baseline           string
	loglevel           string
	timeout            time.Duration
	window             int
	jsonOut            string
	keepLogs           bool
	latencyN           int
	latencyWarmup      int
	latencyInterleave  bool
	// brokerURL is the broker of the run (set by bench).
	brokerURL string
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("gworker-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var workers, modes string
	fs.IntVar(&o.n, "n", 20000, "tasks per run")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; each round runs every worker in every mode")
	fs.StringVar(&workers, "workers", "gworker,bare-ack,minloop,celery", "workers to run: gworker, bare-ack (the ceiling: acknowledges in batches, writes no result; amqp only), minloop, celery; also minloop-global (the minimal loop with a channel-wide prefetch, basic.qos global, as gworker and Celery use), gworker-E (gworker sending task events, -E); baseline is added with -baseline")
	fs.StringVar(&modes, "modes", "", "modes to run (prefill, e2e, latency); default prefill and e2e on amqp, prefill on redis")
	fs.IntVar(&o.latencyN, "latency-n", 1000, "round trips of the Python client per run in latency mode")
	fs.IntVar(&o.latencyWarmup, "latency-warmup", 20, "round trips before the measured ones in latency mode")
	fs.BoolVar(&o.latencyInterleave, "latency-interleave", false, "latency mode: run the workers at once, each on its queue, and send each call to every queue in turn (one client), so that they are measured over the same stretch of time; without it each worker runs on its own, one after the other")
	fs.StringVar(&o.transport, "transport", "amqp", "broker under test: amqp (RabbitMQ) or redis (kombu's Redis transport)")
	fs.StringVar(&o.redisBroker, "redis-broker", "redis://127.0.0.1:6379/0", "Redis URL of the broker with -transport redis")
	fs.IntVar(&o.conc, "c", 16, "concurrency of gworker and of the minimal loop")
	fs.IntVar(&o.prefetchMult, "prefetch-multiplier", 4, "prefetch multiplier of gworker and the minimal loop (prefetch = c × this)")
	fs.IntVar(&o.celeryConc, "celery-c", 2, "Celery prefork processes")
	fs.StringVar(&o.amqpBase, "amqp", "amqp://guest:guest@127.0.0.1:5672", "RabbitMQ URL without the vhost")
	fs.StringVar(&o.redisURL, "redis", "redis://127.0.0.1:6379/0", "Redis URL (result backend)")
	fs.StringVar(&o.resultBackend, "result-backend", "", "result backend of every worker instead of -redis: db+postgresql://user@host/db (Celery's database tables; the database must exist)")
	fs.StringVar(&o.vhost, "vhost", "", "existing vhost to use; empty creates (and deletes) one with rabbitmqctl")
	fs.StringVar(&o.gworker, "gworker", "", "gworker binary; default: next to this program, else built with go build as the Dockerfile builds it (CGO_ENABLED=0)")
	fs.StringVar(&o.gworkerTags, "gworker-tags", "", "build tags of the gworker built when -gworker is not given and none is next to this program, e.g. gworker_nosql,gworker_nootlp")
	fs.StringVar(&o.baseline, "baseline", "", "another gworker binary to run as worker \"baseline\" (e.g. built from an older commit), to measure a change")
	fs.StringVar(&o.python, "python", "/usr/bin/python3", "Python with Celery 5.2.6")
	fs.StringVar(&o.loglevel, "l", "WARNING", "log level given to gworker and Celery")
	fs.DurationVar(&o.timeout, "timeout", 3*time.Minute, "limit of one run")
	fs.IntVar(&o.window, "publish-window", 1000, "unconfirmed messages the publisher allows")
	fs.StringVar(&o.jsonOut, "json", "", "also write every run's figures to this file")
	fs.BoolVar(&o.keepLogs, "keep-logs", false, "keep the workers' logs (their directory is printed)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.transport != "amqp" && o.transport != "redis" {
		return nil, fmt.Errorf("unknown transport %q (amqp, redis)", o.transport)
	}
	if modes == "" {
		modes = "prefill,e2e"
		if o.transport == "redis" {
			modes = "prefill"
		}
	}
	o.workers, o.modes = splitList(workers), splitList(modes)
	if o.baseline != "" && !slices.Contains(o.workers, "baseline") {
		o.workers = append(o.workers, "baseline")
	}
	for _, w := range o.workers {
		if w == "baseline" && o.baseline == "" {
			return nil, errors.New("worker baseline needs -baseline")
		}
		if w != "gworker" && w != "minloop" && w != "minloop-global" && w != "celery" && w != "baseline" && w != "gworker-E" && w != "bare-ack" {
			return nil, fmt.Errorf("unknown worker %q", w)
		}
	}
	if o.transport == "redis" {
		// The ceiling and the latency client are AMQP consumers.
		o.workers = slices.DeleteFunc(o.workers, func(w string) bool { return w == "bare-ack" })
	}
	if o.resultBackend != "" {
		for _, w := range o.workers {
			if strings.HasPrefix(w, "minloop") {
				return nil, fmt.Errorf("worker %s stores results in Redis only: leave it out with -result-backend", w)
			}
		}
		if slices.Contains(o.modes, "latency") {
			return nil, errors.New("latency mode reads results in Redis only: leave it out with -result-backend")
		}
	}
	for _, m := range o.modes {
		if m != "prefill" && m != "e2e" && m != "latency" {
			return nil, fmt.Errorf("unknown mode %q", m)
		}
		if m == "latency" && o.transport != "amqp" {
			return nil, errors.New("latency mode runs on amqp only")
		}
	}
	if o.n < 1 || o.rounds < 1 || o.conc < 1 || o.prefetchMult < 1 || o.celeryConc < 1 || o.window < 1 || o.latencyN < 1 || o.latencyWarmup < 0 {
		return nil, errors.New("-n, -rounds, -c, -prefetch-multiplier, -celery-c, -publish-window and -latency-n must be positive")
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// sample is the outcome of one run.
type sample struct {
	Round     int     `json:"round"`
	Mode      string  `json:"mode"`
	Worker    string  `json:"worker"`
	Tasks     int     `json:"tasks"`
	Seconds   float64 `json:"seconds"`
	TasksPerS float64 `json:"tasks_per_s"`
	CPUus     float64 `json:"cpu_us_per_task"`
	RSSMB     float64 `json:"peak_rss_mb"`
	// AnonMB is the peak of the anonymous part of RSS (RssAnon): the
	// worker's own memory, without its executable's pages.
	AnonMB float64 `json:"peak_anon_rss_mb"`
	// Syscalls is the worker's read and write system calls per task, and
	// Switches its threads' context switches per task, over the same
	// window as CPUus.
	Syscalls float64 `json:"rw_syscalls_per_task"`
	Switches float64 `json:"context_switches_per_task"`
	// BrokerUS and RedisUS are the CPU time of the RabbitMQ (beam.smp)
	// and Redis server processes per task over the same window, when
	// they run on this machine. Other clients of the servers count too.
	BrokerUS float64 `json:"broker_cpu_us_per_task,omitempty"`
	RedisUS  float64 `json:"redis_cpu_us_per_task,omitempty"`
	// P50us, P90us and P99us are the round-trip percentiles of latency
	// mode: add.delay(i, i).get() from one Python client.
	P50us float64 `json:"latency_p50_us,omitempty"`
	P90us float64 `json:"latency_p90_us,omitempty"`
	P99us float64 `json:"latency_p99_us,omitempty"`
	Err   string  `json:"error,omitempty"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "gworker-bench:", err)
		return 2
	}
	if err := bench(ctx, o, stdout); err != nil {
		fmt.Fprintln(stderr, "gworker-bench:", err)
		return 1
	}
	return 0
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func rabbitmqctl(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("rabbitmqctl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func bench(ctx context.Context, o *options, stdout io.Writer) (err error) {
	tmp, err := os.MkdirTemp("", "gworker-bench-")
	if err != nil {
		return err
	}
	defer func() {
		if o.keepLogs {
			fmt.Fprintln(stdout, "worker logs kept in", tmp)
			return
		}
		os.RemoveAll(tmp)
	}()

	// Redis carries the results (unless -result-backend names another
	// store) and, always, the bare-ack ceiling's notifications.
	rdb, err := redisClient(ctx, o.redisURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	var rs results = redisResults{rdb: rdb}
	backendURL := o.redisURL
	if o.resultBackend != "" {
		backendURL = o.resultBackend
		sr, err := openSQLResults(ctx, o.resultBackend)
		if err != nil {
			return err
		}
		defer sr.db.Close()
		rs = sr
	}

	var (
		bb        benchBroker
		brokerURL string
		where     string
	)
	if o.transport == "redis" {
		brokerURL, where = o.redisBroker, "Redis broker "+o.redisBroker
		brdb, err := redisClient(ctx, o.redisBroker)
		if err != nil {
			return err
		}
		defer brdb.Close()
		bb = redisBroker{rdb: brdb}
	} else {
		vhost := o.vhost
		if vhost == "" {
			vhost = "gworker-bench-" + randomHex(4)
			if err := rabbitmqctl(ctx, "add_vhost", vhost); err != nil {
				return err
			}
			defer func() {
				cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if derr := rabbitmqctl(cctx, "delete_vhost", vhost); derr != nil && err == nil {
					err = derr
				}
			}()
			u, _ := url.Parse(o.amqpBase)
			user := "guest"
			if u != nil && u.User != nil {
				user = u.User.Username()
			}
			if err := rabbitmqctl(ctx, "set_permissions", "-p", vhost, user, ".*", ".*", ".*"); err != nil {
				return err
			}
		}
		brokerURL = strings.TrimRight(o.amqpBase, "/") + "/" + url.PathEscape(vhost)
		o.brokerURL = brokerURL
		conn, err := amqp.Dial(brokerURL)
		if err != nil {
			return fmt.Errorf("RabbitMQ at %s: %w", o.amqpBase, err)
		}
		defer conn.Close()
		bb = amqpBroker{conn: conn}
		where = "vhost " + vhost
	}

	self, err := os.Executable()
	if err != nil {
		return err
	}
	sc := specConfig{
		python: o.python, self: self, brokerURL: brokerURL, backendURL: backendURL, redisURL: o.redisURL,
		conc: o.conc, prefetchMult: o.prefetchMult, celeryConc: o.celeryConc,
		loglevel: o.loglevel, moduleDir: tmp, n: o.n,
	}
	if slices.Contains(o.modes, "latency") {
		if err := os.WriteFile(filepath.Join(tmp, "benchclient.py"), []byte(latencyClient), 0o644); err != nil {
			return err
		}
	}
	specs := map[string]workerSpec{}
	for _, w := range o.workers {
		switch w {
		case "gworker":
			if sc.gworker, err = gworkerBinary(ctx, o.gworker, o.gworkerTags, tmp); err != nil {
				return err
			}
			specs[w] = gworkerSpec(sc)
		case "gworker-E":
			if sc.gworker, err = gworkerBinary(ctx, o.gworker, o.gworkerTags, tmp); err != nil {
				return err
			}
			ec := sc
			ec.extra = []string{"-E"}
			sp := gworkerSpec(ec)
			sp.name = "gworker-E"
			specs[w] = sp
		case "baseline":
			bc := sc
			bc.gworker = o.baseline
			sp := gworkerSpec(bc)
			sp.name = "baseline"
			specs[w] = sp
		case "minloop":
			specs[w] = minloopSpec(sc)
		case "bare-ack":
			specs[w] = bareAckSpec(sc)
		case "minloop-global":
			gc := sc
			gc.minloopGlobalQoS = true
			sp := minloopSpec(gc)
			sp.name = w
			specs[w] = sp
		case "celery":
			if err := os.WriteFile(filepath.Join(tmp, "benchtasks.py"), []byte(celeryModule), 0o644); err != nil {
				return err
			}
			specs[w] = celerySpec(sc)
		}
	}

	fmt.Fprintf(stdout, "gworker-bench: %d tasks.add per run, %d round(s), workers %s, modes %s\n",
		o.n, o.rounds, strings.Join(o.workers, ","), strings.Join(o.modes, ","))
	fmt.Fprintf(stdout, "gworker and minloop: -c %d, prefetch %d; celery: prefork -c %d (prefetch %d); log level %s; %s\n",
		o.conc, o.conc*o.prefetchMult, o.celeryConc, o.celeryConc*4, o.loglevel, where)

	var samples []sample
	failed := 0
	for r := 1; r <= o.rounds; r++ {
		fmt.Fprintf(stdout, "round %d/%d\n", r, o.rounds)
		// Rotate the order every round so no worker always runs first.
		order := slices.Clone(o.workers)
		k := (r - 1) % len(order)
		order = append(order[k:], order[:k]...)
		for _, mode := range o.modes {
			var interleaved []sample
			if mode == "latency" && o.latencyInterleave {
				var sps []workerSpec
				for _, w := range order {
					if !specs[w].noResults {
						sps = append(sps, specs[w])
					}
				}
				interleaved = runLatencyInterleaved(ctx, o, bb, sps, tmp, r)
			}
			for _, w := range order {
				if ctx.Err() != nil {
					return fmt.Errorf("interrupted: %w", context.Cause(ctx))
				}
				if mode == "latency" && specs[w].noResults {
					continue // nothing to wait for
				}
				var s sample
				if interleaved != nil {
					i := slices.IndexFunc(interleaved, func(s sample) bool { return s.Worker == w })
					s = interleaved[i]
				} else {
					s = runOne(ctx, o, bb, rdb, rs, specs[w], tmp, r, mode)
				}
				samples = append(samples, s)
				if s.Err != "" {
					failed++
					fmt.Fprintf(stdout, "  %-7s %-8s FAILED: %s\n", mode, w, s.Err)
					continue
				}
				lat := ""
				if mode == "latency" {
					lat = fmt.Sprintf("  round trip p50 %.0f µs, p90 %.0f µs, p99 %.0f µs", s.P50us, s.P90us, s.P99us)
				}
				fmt.Fprintf(stdout, "  %-7s %-8s %6d tasks in %6.2fs  %8.0f tasks/s  %6.0f µs CPU/task  %6.1f MB peak RSS (%.1f anon)  %5.2f r/w syscalls/task  %5.2f switches/task  (RabbitMQ %.0f µs, Redis %.0f µs CPU/task)%s\n",
					mode, w, s.Tasks, s.Seconds, s.TasksPerS, s.CPUus, s.RSSMB, s.AnonMB, s.Syscalls, s.Switches, s.BrokerUS, s.RedisUS, lat)
			}
		}
	}
	report(stdout, o, samples)
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(samples, "", "  ")
		if err := os.WriteFile(o.jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d run(s) failed", failed)
	}
	return nil
}

func redisClient(ctx context.Context, u string) (*redis.Client, error) {
	opt, err := redis.ParseURL(u)
	if err != nil {
		return nil, fmt.Errorf("redis URL: %w", err)
	}
	c := redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("Redis at %s: %w", opt.Addr, err)
	}
	return c, nil
}

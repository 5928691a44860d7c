package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/demo"
	"github.com/gworker/gworker/internal/amqpops"
	"github.com/gworker/gworker/internal/amqpworker"
	"github.com/gworker/gworker/internal/opsplane"
	"github.com/gworker/gworker/internal/redact"
	"github.com/gworker/gworker/worker"
)

// commonFlags are the connection flags every command takes.
type commonFlags struct {
	broker       string
	backend      string
	defaultQueue string
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	c.broker = envOr("CELERY_BROKER_URL", amqptransport.DefaultURL)
	c.backend = os.Getenv("CELERY_RESULT_BACKEND")
	fs.StringVar(&c.broker, "broker", c.broker, "broker URL (env CELERY_BROKER_URL)")
	fs.StringVar(&c.broker, "b", c.broker, "shorthand for --broker")
	fs.StringVar(&c.backend, "result-backend", c.backend, "result backend URL: redis://... or rpc:// (env CELERY_RESULT_BACKEND)")
	// -h prints these defaults, which come from the environment: show
	// them without their passwords.
	for _, name := range []string{"broker", "b", "result-backend"} {
		fl := fs.Lookup(name)
		fl.DefValue = redact.URL(fl.DefValue)
	}
	fs.StringVar(&c.defaultQueue, "default-queue", "celery", "queue of tasks sent without one: chain links, callbacks, chord bodies (task_default_queue)")
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

type workerFlags struct {
	commonFlags
	queues         string
	concurrency    int
	prefetch       int
	loglevel       string
	hostname       string
	acksLate       bool
	accept         string
	resultExtended bool
	trackStarted   bool
	resultExpires  time.Duration
	rateLimits     rateLimitFlag
	ops            opsFlags
}

// rateLimitFlag collects --rate-limit NAME=RATE flags (Celery's per-task
// rate_limit, e.g. tasks.add=10/s).
type rateLimitFlag map[string]string

func (r rateLimitFlag) String() string { return fmt.Sprint(map[string]string(r)) }

func (r rateLimitFlag) Set(v string) error {
	name, rate, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("want TASK=RATE, e.g. tasks.add=10/s")
	}
	if _, err := worker.ParseRateLimit(rate); err != nil {
		return err
	}
	r[name] = rate
	return nil
}

func parseWorkerFlags(args []string, stderr io.Writer) (*workerFlags, error) {
	f := &workerFlags{}
	fs := flag.NewFlagSet("gworker worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.register(fs)
	fs.StringVar(&f.queues, "queues", "celery", "comma-separated queues to consume")
	fs.StringVar(&f.queues, "Q", "celery", "shorthand for --queues")
	fs.IntVar(&f.concurrency, "concurrency", runtime.NumCPU(), "number of tasks run at once")
	fs.IntVar(&f.concurrency, "c", runtime.NumCPU(), "shorthand for --concurrency")
	fs.IntVar(&f.prefetch, "prefetch-multiplier", 4, "messages prefetched per concurrency slot")
	fs.StringVar(&f.loglevel, "loglevel", "INFO", "DEBUG, INFO, WARNING, ERROR or CRITICAL")
	fs.StringVar(&f.loglevel, "l", "INFO", "shorthand for --loglevel")
	fs.StringVar(&f.hostname, "hostname", "celery@%h", "node name; %h is the host name, %n its first label, %d its domain")
	fs.StringVar(&f.hostname, "n", "celery@%h", "shorthand for --hostname")
	fs.BoolVar(&f.acksLate, "acks-late", false, "acknowledge messages after the task ran (task_acks_late)")
	fs.StringVar(&f.accept, "accept-content", "json", "accepted serializers: json, msgpack (comma-separated)")
	fs.BoolVar(&f.resultExtended, "result-extended", false, "store task name, args, kwargs, worker, retries and queue with results")
	fs.BoolVar(&f.trackStarted, "track-started", false, "store the STARTED state (task_track_started)")
	fs.DurationVar(&f.resultExpires, "result-expires", 24*time.Hour, "how long results are kept (result_expires); 0 keeps them forever")
	f.rateLimits = rateLimitFlag{}
	fs.Var(f.rateLimits, "rate-limit", "TASK=RATE: a task's rate limit, as Celery's rate_limit (10/s, 100/m, 1000/h); repeatable")
	f.ops.register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return f, nil
}

// expandHostname expands %h, %n and %d as celery worker -n does.
func expandHostname(s string) string {
	host, _ := os.Hostname()
	short, domain, _ := strings.Cut(host, ".")
	r := strings.NewReplacer("%h", host, "%n", short, "%d", domain, "%%", "%")
	return r.Replace(s)
}

func acceptTypes(s string) ([]string, error) {
	var out []string
	for _, name := range strings.Split(s, ",") {
		switch strings.TrimSpace(strings.ToLower(name)) {
		case "json", "application/json":
			out = append(out, "application/json")
		case "msgpack", "application/x-msgpack":
			out = append(out, "application/x-msgpack")
		case "":
		default:
			return nil, fmt.Errorf("unsupported content type %q: gworker accepts json and msgpack (never pickle or yaml)", name)
		}
	}
	return out, nil
}

func runWorker(args []string, stdout, stderr io.Writer) int {
	f, err := parseWorkerFlags(args, stderr)
	if err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		fmt.Fprintln(stderr, "gworker:", err)
		return 2
	}
	log, err := newLogger(f.loglevel, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "gworker:", err)
		return 2
	}
	defer log.Sync()
	accept, err := acceptTypes(f.accept)
	if err != nil {
		fmt.Fprintln(stderr, "gworker:", err)
		return 2
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	// Signals are handled from the start, so that a worker still waiting
	// for its broker stops on the first one.
	var running atomic.Pointer[worker.Worker]
	go func() {
		if _, ok := <-sigs; !ok {
			return
		}
		log.Info("worker: Warm shutdown (signal received; send it again for a cold shutdown)")
		stop()
		if _, ok := <-sigs; !ok {
			return
		}
		log.Warn("worker: Cold shutdown")
		if w := running.Load(); w != nil {
			w.Terminate()
		}
	}()

	env, err := connect(ctx, f.commonFlags, f.resultExpires, log, roleWorker)
	if err != nil {
		if ctx.Err() != nil {
			return 0 // stopped by a signal while connecting
		}
		log.Error("cannot start: " + err.Error())
		return 1
	}
	defer env.Close()

	plane, err := opsplane.New(f.ops.config(f.commonFlags, expandHostname(f.hostname), env.Broker, stop, log))
	if err != nil {
		log.Error("cannot start: " + err.Error())
		return 1
	}

	reg := worker.NewRegistry()
	if err := demo.Register(reg); err != nil {
		log.Error(err.Error())
		return 1
	}
	if err := worker.RegisterBuiltins(reg, env.Producer, env.Backend, log); err != nil {
		log.Error(err.Error())
		return 1
	}
	if err := demo.RegisterClientTasks(reg, env.Producer, env.Backend); err != nil {
		log.Error(err.Error())
		return 1
	}
	for name, rate := range f.rateLimits {
		if err := reg.SetRateLimit(name, rate); err != nil {
			log.Error(err.Error())
			return 1
		}
	}
	cfg := worker.Config{
		Registry:           reg,
		Broker:             amqpworker.New(env.Broker),
		Backend:            env.Backend,
		Followups:          env.Followups,
		Queues:             splitList(f.queues),
		Concurrency:        f.concurrency,
		PrefetchMultiplier: f.prefetch,
		AcksLate:           f.acksLate,
		Hostname:           expandHostname(f.hostname),
		Accept:             accept,
		ResultExtended:     f.resultExtended,
		TrackStarted:       f.trackStarted,
		Logger:             log,
		Events:             plane.Sink(),
		Revoked:            plane.Revoked(),
	}
	w, err := worker.New(cfg)
	if err != nil {
		log.Error(err.Error())
		return 1
	}
	printBanner(stdout, cfg, f, reg)

	running.Store(w)
	if ctx.Err() != nil {
		return 0
	}
	if err := plane.Start(ctx, w); err != nil {
		log.Error("cannot start remote control and events: " + err.Error())
		return 1
	}
	runErr := w.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := plane.Stop(sctx); err != nil {
		log.Warn("stopping remote control and events: " + err.Error())
	}
	cancel()
	if runErr != nil {
		log.Error(runErr.Error())
		return 1
	}
	return 0
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

func printBanner(w io.Writer, cfg worker.Config, f *workerFlags, reg *worker.Registry) {
	backend := "disabled://"
	if f.backend != "" {
		backend = redactAny(f.backend)
	}
	fmt.Fprintf(w, `
 -------------- %s v%s (gworker)
--- ***** ----- 
-- ******* ---- %s %s %s
- *** --- * --- 
- ** ---------- [config]
- ** ---------- .> app:         gworker
- ** ---------- .> transport:   %s
- ** ---------- .> results:     %s
- *** --- * --- .> concurrency: %d (goroutines)
-- ******* ---- .> task events: %s
--- ***** ----- 
 -------------- [queues]
`, cfg.Hostname, version, runtime.GOOS, runtime.GOARCH, runtime.Version(),
		amqptransport.RedactURL(f.broker), backend, cfg.Concurrency, onOff(f.ops.taskEvents))
	for _, q := range cfg.Queues {
		fmt.Fprintf(w, "                .> %-16s exchange=%s(direct) key=%s\n", q, q, q)
	}
	fmt.Fprintln(w, "\n[tasks]")
	for _, n := range reg.Names() {
		if strings.HasPrefix(n, "celery.") {
			continue // builtins, as Celery's banner leaves them out
		}
		fmt.Fprintf(w, "  . %s\n", n)
	}
	fmt.Fprintln(w)
}

// newLogger builds a zap logger whose lines read like Celery's:
// [2026-01-02 03:04:05,678: INFO/MainProcess] Task tasks.add[...] received
func newLogger(level string, out io.Writer) (*zap.Logger, error) {
	return buildLogger(level, out)
}

func onOff(b bool) string {
	if b {
		return "ON"
	}
	return "OFF"
}

// opsFlags are the flags of the operations plane: events, remote control,
// mingle and the state file, as celery worker's.
type opsFlags struct {
	taskEvents       bool
	heartbeat        float64
	withoutHeartbeat bool
	withoutMingle    bool
	withoutGossip    bool
	statedb          string
}

func (o *opsFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&o.taskEvents, "task-events", false, "send task events (task-received, -started, -succeeded, ...) for monitors such as Flower")
	fs.BoolVar(&o.taskEvents, "E", false, "shorthand for --task-events")
	fs.Float64Var(&o.heartbeat, "heartbeat-interval", 2, "seconds between worker-heartbeat events")
	fs.BoolVar(&o.withoutHeartbeat, "without-heartbeat", false, "send no worker-heartbeat events")
	fs.BoolVar(&o.withoutMingle, "without-mingle", false, "do not ask the other nodes for revoked ids at start-up")
	fs.BoolVar(&o.withoutGossip, "without-gossip", false, "accepted for compatibility: gworker does not gossip")
	fs.StringVar(&o.statedb, "statedb", "", "file that keeps the revoked task ids across restarts")
	fs.StringVar(&o.statedb, "S", "", "shorthand for --statedb")
}

func (o *opsFlags) config(c commonFlags, hostname string, b *amqptransport.Broker, shutdown func(), log *zap.Logger) opsplane.Config {
	return opsplane.Config{
		Transport:         amqpops.New(b, log),
		Hostname:          hostname,
		TaskEvents:        o.taskEvents,
		HeartbeatInterval: time.Duration(o.heartbeat * float64(time.Second)),
		WithoutHeartbeat:  o.withoutHeartbeat || o.heartbeat <= 0,
		WithoutMingle:     o.withoutMingle,
		StateDB:           o.statedb,
		BrokerURL:         c.broker,
		Version:           version,
		Shutdown:          shutdown,
		Logger:            log,
	}
}

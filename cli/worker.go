package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/gworker/gworker/config"
	"github.com/gworker/gworker/internal/logging"
	"github.com/gworker/gworker/internal/redact"
	"github.com/gworker/gworker/internal/version"
	"github.com/gworker/gworker/worker"
)

// workerFlags are celery worker's flags and gworker's own.
type workerFlags struct {
	queues, exclude, hostname, loglevel, accept     string
	pool, optimization, autoscale, logfile, pidfile string
	statedb, include, schedule, scheduler           string
	uid, gid, umask, executable                     string
	concurrency, prefetch, heartbeatInterval        int
	maxTasksPerChild, maxMemoryPerChild             int
	detach, beat                                    bool
	eventQueueExclusive, eventQueueDurable          bool
	rateLimits                                      rateLimitFlag
	timeLimit, softTimeLimit                        float64
}

// rateLimitFlag collects --rate-limit TASK=RATE flags.
type rateLimitFlag map[string]string

func (r rateLimitFlag) String() string { return optionsFlag(r).String() }

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

func (r rateLimitFlag) Type() string { return "TASK=RATE" }

// parseWorkerFlags reads the worker command line into cfg (a copy of the
// App's Config) and returns the flags cfg has no field for.
func parseWorkerFlags(cfg *config.Config, g *globalFlags, args []string, stdout io.Writer) (*workerFlags, *pflag.FlagSet, error) {
	f := &workerFlags{rateLimits: rateLimitFlag{}}
	for k, v := range cfg.RateLimits {
		f.rateLimits[k] = v
	}
	fs := newFlagSet("worker", g, *cfg, stdout)
	// Worker options.
	fs.StringVarP(&f.hostname, "hostname", "n", cfg.Hostname, "node name; %h is the host name, %n its first label, %d its domain")
	fs.BoolVarP(&f.detach, "detach", "D", false, "refused: run gworker in the foreground under systemd, supervisord or a container runtime")
	fs.StringVarP(&f.statedb, "statedb", "S", "", "state database of revoked task ids")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "serve Prometheus /metrics, /healthz and /readyz on this address, e.g. 127.0.0.1:9808")
	fs.StringVarP(&f.loglevel, "loglevel", "l", cfg.LogLevel, "DEBUG, INFO, WARNING, ERROR, CRITICAL or FATAL")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "text (lines shaped like Celery's) or json (one object per line, for log shippers)")
	fs.StringVarP(&f.optimization, "optimization", "O", "", "celery's optimization profile (default, fair); accepted and ignored: gworker hands each task to a free goroutine")
	fs.IntVar(&f.prefetch, "prefetch-multiplier", cfg.PrefetchMultiplier, "messages prefetched per concurrency slot")
	// Pool options.
	fs.IntVarP(&f.concurrency, "concurrency", "c", cfg.Concurrency, "number of tasks run at once; default: the number of CPUs")
	fs.StringVarP(&f.pool, "pool", "P", "", "celery's pool (prefork, eventlet, gevent, solo, processes, threads); accepted and ignored: gworker runs tasks on goroutines")
	fs.BoolVarP(&cfg.TaskEvents, "task-events", "E", cfg.TaskEvents, "send task events for celery events and Flower")
	fs.BoolVar(&cfg.TaskEvents, "events", cfg.TaskEvents, "same as --task-events")
	fs.Float64Var(&f.timeLimit, "time-limit", cfg.TimeLimit.Seconds(), "hard time limit in seconds for tasks that set none")
	fs.Float64Var(&f.softTimeLimit, "soft-time-limit", cfg.SoftTimeLimit.Seconds(), "soft time limit in seconds for tasks that set none")
	fs.IntVar(&f.maxTasksPerChild, "max-tasks-per-child", 0, "accepted and ignored: gworker has no child processes to recycle")
	fs.IntVar(&f.maxMemoryPerChild, "max-memory-per-child", 0, "accepted and ignored: gworker has no child processes to recycle")
	// Queue options.
	fs.BoolVar(&cfg.Purge, "purge", cfg.Purge, "discard the waiting messages of the consumed queues first")
	fs.BoolVar(&cfg.Purge, "discard", cfg.Purge, "same as --purge")
	fs.StringVarP(&f.queues, "queues", "Q", strings.Join(cfg.Queues, ","), "comma-separated queues to consume")
	fs.StringVarP(&f.exclude, "exclude-queues", "X", strings.Join(cfg.ExcludeQueues, ","), "comma-separated queues not to consume")
	fs.StringVarP(&f.include, "include", "I", "", "celery's Python modules to import; accepted and ignored")
	// Features.
	fs.BoolVar(&cfg.WithoutGossip, "without-gossip", cfg.WithoutGossip, "do not subscribe to other workers' events")
	fs.BoolVar(&cfg.WithoutMingle, "without-mingle", cfg.WithoutMingle, "do not synchronize with other workers at start-up")
	fs.BoolVar(&cfg.WithoutHeartbeat, "without-heartbeat", cfg.WithoutHeartbeat, "send no worker-heartbeat events")
	fs.IntVar(&f.heartbeatInterval, "heartbeat-interval", int(cfg.HeartbeatInterval.Seconds()), "seconds between worker-heartbeat events")
	fs.StringVar(&f.autoscale, "autoscale", "", "MAX,MIN: gworker runs MAX tasks at once (goroutines cost nothing idle)")
	// Embedded beat.
	fs.BoolVarP(&f.beat, "beat", "B", false, "accepted and ignored: run celery beat on its own")
	fs.StringVarP(&f.schedule, "schedule-filename", "s", "", "celery beat's schedule; accepted and ignored")
	fs.StringVar(&f.schedule, "schedule", "", "same as --schedule-filename")
	fs.StringVar(&f.scheduler, "scheduler", "", "celery beat's scheduler; accepted and ignored")
	// Daemonization.
	fs.StringVarP(&f.logfile, "logfile", "f", "", "append log lines to this file instead of standard error")
	fs.StringVar(&f.pidfile, "pidfile", "", "write the process id to this file, removed on exit")
	fs.StringVar(&f.uid, "uid", "", "accepted and ignored: start gworker as the user you want")
	fs.StringVar(&f.gid, "gid", "", "accepted and ignored: start gworker as the group you want")
	fs.StringVar(&f.umask, "umask", "", "file mode creation mask, octal (e.g. 022)")
	fs.StringVar(&f.executable, "executable", "", "accepted and ignored")
	// gworker's own.
	fs.StringVar(&cfg.DefaultQueue, "default-queue", cfg.DefaultQueue, "queue of the tasks the worker sends without one: chain links, callbacks, chord bodies (task_default_queue)")
	fs.BoolVar(&cfg.AcksLate, "acks-late", cfg.AcksLate, "acknowledge messages after the task ran (task_acks_late)")
	fs.IntVar(&cfg.MaxRedeliveries, "max-redeliveries", cfg.MaxRedeliveries, "deliveries after the first of an acks_late task that never finished, before it fails with WorkerLostError (0: 5, negative: no cap)")
	fs.IntVar(&cfg.MaxMessageSize, "max-message-size", cfg.MaxMessageSize, "largest task message body, in bytes after decompression; a larger one is rejected (0: 16 MiB)")
	fs.IntVar(&cfg.MaxMessageValues, "max-message-values", cfg.MaxMessageValues, "most values (numbers, strings, lists, maps) a task message body may decode to; a larger one is rejected (0: 2097152, negative: no cap)")
	fs.IntVar(&cfg.ETATaskLimit, "eta-task-limit", cfg.ETATaskLimit, "ETA/countdown tasks held in memory at most; past it they wait on the broker (worker_eta_task_limit; 0: 10000)")
	fs.Var(secondsValue{&cfg.ETAHorizon}, "eta-horizon", "seconds an ETA or countdown message is held at most before it is published again; keep it below RabbitMQ's consumer_timeout (0: 1500)")
	fs.StringVar(&cfg.DefaultQueueType, "default-queue-type", cfg.DefaultQueueType, "type of the queues gworker creates: classic or quorum (task_default_queue_type)")
	fs.StringVar(&cfg.DefaultExchangeType, "default-exchange-type", cfg.DefaultExchangeType, "type of the exchange of each task queue gworker declares: direct, topic or fanout (task_default_exchange_type; native delayed delivery needs topic or fanout)")
	fs.StringVar(&cfg.DelayedDeliveryQueueType, "delayed-delivery-queue-type", cfg.DelayedDeliveryQueueType, "type of the celery_delayed_* queues of native delayed delivery: quorum or classic (broker_native_delayed_delivery_queue_type)")
	fs.BoolVar(&cfg.ControlQueueExclusive, "control-queue-exclusive", cfg.ControlQueueExclusive, "declare the remote control queues exclusive (control_queue_exclusive; RabbitMQ 4.3 refuses transient ones)")
	fs.BoolVar(&cfg.ControlQueueDurable, "control-queue-durable", cfg.ControlQueueDurable, "declare the remote control queues durable (control_queue_durable)")
	fs.BoolVar(&f.eventQueueExclusive, "event-queue-exclusive", false, "celery's event_queue_exclusive; accepted: gworker sends events and declares no event queue")
	fs.BoolVar(&f.eventQueueDurable, "event-queue-durable", false, "celery's event_queue_durable; accepted: gworker sends events and declares no event queue")
	fs.Var(secondsValue{&cfg.BrokerHeartbeat}, "broker-heartbeat", "AMQP heartbeat in seconds (broker_heartbeat); a silent connection is replaced after 2.5 of them")
	fs.StringVar(&f.accept, "accept-content", strings.Join(cfg.Accept, ","), "accepted serializers: json, msgpack (comma-separated)")
	fs.BoolVar(&cfg.ResultExtended, "result-extended", cfg.ResultExtended, "store task name, args, kwargs, worker, retries and queue with results")
	fs.BoolVar(&cfg.TrackStarted, "track-started", cfg.TrackStarted, "store the STARTED state (task_track_started)")
	fs.StringToStringVar(&cfg.DatabaseTableNames, "database-table-names", cfg.DatabaseTableNames, "task=NAME,group=NAME: Celery's database backend table names (database_table_names)")
	fs.StringToStringVar(&cfg.DatabaseTableSchemas, "database-table-schemas", cfg.DatabaseTableSchemas, "task=SCHEMA,group=SCHEMA: schemas of those tables (database_table_schemas)")
	fs.Var(secondsValue{&cfg.ResultExpires}, "result-expires", "how long results are kept, in seconds or as 1h30m (result_expires); 0 keeps them forever")
	fs.Var(f.rateLimits, "rate-limit", "TASK=RATE: a task's rate limit (10/s, 100/m, 1000/h); repeatable")
	fs.Var(secondsValue{&cfg.SoftShutdownTimeout}, "soft-shutdown-timeout", "on a cold shutdown, seconds running tasks get to finish (worker_soft_shutdown_timeout)")
	fs.BoolVar(&cfg.EnableSoftShutdownOnIdle, "enable-soft-shutdown-on-idle", cfg.EnableSoftShutdownOnIdle, "on a cold shutdown, wait the soft shutdown timeout even when no task runs (worker_enable_soft_shutdown_on_idle)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return nil, fs, err
	}
	if len(rest) > 0 {
		return nil, fs, usageError{fmt.Sprintf("unexpected arguments: %v", rest)}
	}
	g.noteSet(fs)
	if fs.Changed("result-expires") && cfg.ResultExpires == 0 {
		cfg.ResultExpires = -1 // 0 on the command line: keep forever
	}
	cfg.Hostname = f.hostname
	cfg.LogLevel = f.loglevel
	cfg.PrefetchMultiplier = f.prefetch
	cfg.Concurrency = f.concurrency
	cfg.Queues = splitList(f.queues)
	cfg.ExcludeQueues = splitList(f.exclude)
	cfg.Accept = splitList(f.accept)
	cfg.RateLimits = f.rateLimits
	cfg.TimeLimit = secondsDuration(f.timeLimit)
	cfg.SoftTimeLimit = secondsDuration(f.softTimeLimit)
	if f.heartbeatInterval > 0 {
		cfg.HeartbeatInterval = secondsDuration(float64(f.heartbeatInterval))
	}
	if f.autoscale != "" {
		max, _, _ := strings.Cut(f.autoscale, ",")
		n, err := strconv.Atoi(strings.TrimSpace(max))
		if err != nil || n <= 0 {
			return nil, fs, usageError{fmt.Sprintf("--autoscale %q: want MAX,MIN, e.g. 10,3", f.autoscale)}
		}
		cfg.Concurrency = n
	}
	if f.pool != "" {
		switch f.pool {
		case "prefork", "eventlet", "gevent", "solo", "processes", "threads":
		default:
			return nil, fs, usageError{fmt.Sprintf("--pool %q: one of prefork, eventlet, gevent, solo, processes, threads", f.pool)}
		}
	}
	if f.optimization != "" && f.optimization != "default" && f.optimization != "fair" {
		return nil, fs, usageError{fmt.Sprintf("-O %q: default or fair", f.optimization)}
	}
	if f.eventQueueExclusive && f.eventQueueDurable {
		return nil, fs, usageError{"--event-queue-exclusive and --event-queue-durable: a queue cannot be both (an exclusive queue goes with its connection)"}
	}
	if f.detach {
		return nil, fs, usageError{"--detach is not supported: run gworker in the foreground under systemd, supervisord or a container runtime, which restart it and collect its logs"}
	}
	g.applyConnection(cfg)
	if f.statedb != "" {
		cfg.StateDB = f.statedb
	}
	return f, fs, nil
}

func secondsDuration(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// ignoredFlagWarnings returns one line per given flag that does not apply
// to a Go worker, saying why.
func ignoredFlagWarnings(f *workerFlags, g *globalFlags, fs *pflag.FlagSet) []string {
	var out []string
	add := func(name, why string) {
		if fs.Changed(name) || g.set[name] {
			out = append(out, why)
		}
	}
	add("app", fmt.Sprintf("-A %s names a Python app: gworker runs the Go tasks compiled into it", g.app))
	add("loader", "--loader is a Python loader: ignored")
	add("config", "--config is a Python config module: ignored")
	add("pool", fmt.Sprintf("-P %s: gworker runs tasks on goroutines, there is no pool to choose", f.pool))
	add("optimization", fmt.Sprintf("-O %s: gworker hands each task to a free goroutine, which is what -O fair does", f.optimization))
	add("max-tasks-per-child", "--max-tasks-per-child: gworker has no child processes to recycle")
	add("max-memory-per-child", "--max-memory-per-child: gworker has no child processes to recycle; Go's garbage collector frees task memory")
	add("beat", "-B: gworker runs no beat scheduler; run `celery beat` on its own")
	add("schedule-filename", "--schedule belongs to celery beat: ignored")
	add("schedule", "--schedule belongs to celery beat: ignored")
	add("scheduler", "--scheduler belongs to celery beat: ignored")
	add("include", "-I names Python modules: ignored")
	add("uid", "--uid: start gworker as the user you want (systemd User=): ignored")
	add("gid", "--gid: start gworker as the group you want (systemd Group=): ignored")
	add("executable", "--executable: ignored")
	add("event-queue-exclusive", "--event-queue-exclusive: gworker sends events and receives none (it has no gossip), so it declares no event queue: nothing to apply it to")
	add("event-queue-durable", "--event-queue-durable: gworker sends events and receives none (it has no gossip), so it declares no event queue: nothing to apply it to")
	return out
}

// runWorker is the worker command.
func runWorker(ctx context.Context, app App, g *globalFlags, args []string, stdout, stderr io.Writer) int {
	cfg := app.Config()
	f, fs, err := parseWorkerFlags(&cfg, g, args, stdout)
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "gworker worker:", err)
		return 2
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "gworker worker:", err)
		return 2
	}
	if f.umask != "" {
		m, err := strconv.ParseUint(f.umask, 8, 32)
		if err != nil {
			fmt.Fprintf(stderr, "gworker worker: --umask %q: want an octal mask such as 022\n", f.umask)
			return 2
		}
		if err := setUmask(int(m)); err != nil {
			fmt.Fprintln(stderr, "gworker worker: --umask:", err)
			return 2
		}
	}

	logOut := stderr
	if f.logfile != "" {
		lf, err := os.OpenFile(f.logfile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Fprintln(stderr, "gworker worker: --logfile:", err)
			return 1
		}
		defer lf.Close()
		logOut = lf
	}
	if cfg.Logger == nil {
		l, err := logging.NewFormat(cfg.LogLevel, cfg.LogFormat, logOut)
		if err != nil {
			fmt.Fprintln(stderr, "gworker worker:", err)
			return 2
		}
		cfg.Logger = l
	}
	log := cfg.Logger
	defer func() { _ = log.Sync() }()
	if err := app.Configure(cfg); err != nil {
		fmt.Fprintln(stderr, "gworker worker:", err)
		if errors.Is(err, config.ErrInvalid) {
			return 2
		}
		return 1
	}
	for _, w := range ignoredFlagWarnings(f, g, fs) {
		log.Warn(w)
	}

	if f.pidfile != "" {
		release, err := writePidfile(f.pidfile)
		if err != nil {
			log.Error(err.Error())
			return 1
		}
		defer release()
	}
	if !g.quiet {
		printBanner(stdout, app.Config(), app.Registry().Names())
	}

	// Signals are handled from the start, so that a worker still waiting
	// for its broker stops on the first one.
	startCtx, cancelStart := context.WithCancel(ctx)
	defer cancelStart()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	// As Celery 5.5: SIGTERM and SIGINT are warm, a second one or SIGQUIT
	// cold; REMAP_SIGTERM=SIGQUIT makes SIGTERM cold, for platforms
	// (Kubernetes) that send one SIGTERM and then SIGKILL.
	remapTerm := os.Getenv(RemapSIGTERMEnv) == "SIGQUIT"
	isCold := func(s os.Signal) bool { return s == syscall.SIGQUIT || (remapTerm && s == syscall.SIGTERM) }
	stopping := make(chan struct{})
	handlerDone := make(chan struct{})
	go func() {
		defer close(handlerDone)
		cold := false
		select {
		case s := <-sigs:
			if cold = isCold(s); cold {
				log.Warn("signal received (" + s.String() + "): cold shutdown")
			} else {
				log.Info("signal received: shutting down warmly; send it again for a cold shutdown")
			}
		case <-ctx.Done():
			log.Info("worker: Warm shutdown")
		case <-stopping:
			return
		}
		cancelStart()
		go func() { _ = app.Stop(context.Background()) }()
		if cold {
			app.ColdShutdown()
			return
		}
		select {
		case <-sigs:
			app.ColdShutdown()
		case <-stopping:
		}
	}()
	defer func() { close(stopping); <-handlerDone }()

	if err := app.Start(startCtx); err != nil {
		if startCtx.Err() != nil {
			return 0 // stopped by a signal while connecting
		}
		log.Error("cannot start: " + err.Error())
		return 1
	}
	<-app.Stopped()
	if err := app.Err(); err != nil {
		log.Error(err.Error())
		return 1
	}
	return 0
}

// RemapSIGTERMEnv is the environment variable Celery reads to remap
// SIGTERM: REMAP_SIGTERM=SIGQUIT makes SIGTERM a cold shutdown.
const RemapSIGTERMEnv = "REMAP_SIGTERM"

// writePidfile writes the process id to path, as celery's --pidfile: it
// refuses a file that names a live process, replaces a stale one, and
// returns the function that removes it.
func writePidfile(path string) (func(), error) {
	if b, err := os.ReadFile(path); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 && pid != os.Getpid() {
			if processRunning(pid) {
				return nil, fmt.Errorf("pidfile %s names process %d, which is running: is another worker using it?", path, pid)
			}
		}
		_ = os.Remove(path) // stale
	}
	fd, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pidfile: %w", err)
	}
	_, werr := fmt.Fprintf(fd, "%d\n", os.Getpid())
	if cerr := fd.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("pidfile: %w", werr)
	}
	return func() { _ = os.Remove(path) }, nil
}

// printBanner prints celery worker's start-up banner for a worker of cfg
// running tasks.
func printBanner(w io.Writer, cfg config.Config, tasks []string) {
	backend := "disabled://"
	if u := cfg.ResolvedResultBackend(); u != "" {
		backend = redact.URL(u)
	}
	events := "OFF (enable -E to monitor tasks in this worker)"
	if cfg.TaskEvents {
		events = "ON"
	}
	fmt.Fprintf(w, `
 -------------- %s v%s (gworker)
--- ***** ----- 
-- ******* ---- %s %s %s
- *** --- * --- 
- ** ---------- [config]
- ** ---------- .> app:         %s
- ** ---------- .> transport:   %s
- ** ---------- .> results:     %s
- *** --- * --- .> concurrency: %d (goroutines)
-- ******* ---- .> task events: %s
--- ***** ----- 
 -------------- [queues]
`, config.ExpandHostname(cfg.Hostname), version.Version, runtime.GOOS, runtime.GOARCH, runtime.Version(),
		strings.TrimSpace(cfg.AppName+" "+cfg.AppVersion), redact.URL(cfg.ResolvedBrokerURL()), backend, cfg.Concurrency, events)
	for _, q := range cfg.ConsumedQueues() {
		fmt.Fprintf(w, "                .> %-16s exchange=%s(direct) key=%s\n", q, q, q)
	}
	fmt.Fprintln(w, "\n[tasks]")
	for _, n := range tasks {
		if strings.HasPrefix(n, "celery.") {
			continue // builtins, as Celery's banner leaves them out
		}
		fmt.Fprintf(w, "  . %s\n", n)
	}
	fmt.Fprintln(w)
}

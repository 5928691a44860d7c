// Package cli is gworker's command line, celery's in Go: `worker` (the
// default command) consumes task messages as celery worker does, `call`
// sends a task, `result` prints a stored result, `inspect`, `control` and
// `status` ask and steer Celery and gworker nodes. It takes celery's flags
// and environment variables, so that systemd units, supervisor configs and
// Kubernetes manifests written for Celery start gworker unchanged.
//
// It runs on an App, the small interface below of what it needs from
// gworker's App; gworker.App.Main and RunCLI call Run with the App a
// program built and registered its tasks on.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/gworker/gworker/config"
	"github.com/gworker/gworker/control"
	"github.com/gworker/gworker/internal/redact"
	"github.com/gworker/gworker/internal/version"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// App is what the command line needs of a gworker App; *gworker.App is
// one. The command line applies its flags to the App with Configure
// before it connects, so that the App is the worker (or the client) the
// flags describe, and the tasks registered on it run there.
type App interface {
	// Config returns the App's Config with its defaults filled in: the
	// flags' defaults.
	Config() config.Config
	// Configure replaces the Config before the App connects, keeping its
	// tasks; it refuses an invalid Config or a connected App.
	Configure(config.Config) error
	// Registry holds the App's tasks, listed by the worker's banner.
	Registry() *worker.Registry

	// Connect connects to the broker and the result backend, waiting for
	// the broker until ctx ends; Close lets go of them.
	Connect(ctx context.Context) error
	Close() error
	// SendTask sends a task (call).
	SendTask(ctx context.Context, name string, args []any, kwargs map[string]any, opts ...producer.Option) (*result.AsyncResult, error)
	// Backend is the result backend, nil when results are disabled
	// (call --wait, result).
	Backend(ctx context.Context) (result.Backend, error)
	// Control is a remote-control client on the broker (inspect,
	// control, status).
	Control(ctx context.Context) (*control.Client, error)

	// Start runs the worker until Stop: it returns once the worker
	// consumes, or with the error that kept it from starting.
	Start(ctx context.Context) error
	// Stop shuts the worker down warmly, turning cold when ctx ends.
	Stop(ctx context.Context) error
	// Stopped is closed once the worker stopped; Err then says why.
	Stopped() <-chan struct{}
	Err() error
	// ColdShutdown cancels the running tasks after the soft shutdown
	// timeout (the second signal).
	ColdShutdown()
}

// Run runs one gworker command line (args without the program name) on
// app and returns the exit status: 0 on success and after a warm
// shutdown, 1 when the command failed, 2 for a usage error. SIGINT and
// SIGTERM stop it (twice: a cold shutdown); so does ctx.
func Run(ctx context.Context, app App, args []string, stdout, stderr io.Writer) int {
	g := &globalFlags{}
	cmd, rest, err := splitCommand(g, args, app.Config())
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			usage(stdout, app.Config().AppName)
			return 0
		}
		fmt.Fprintln(stderr, "gworker:", err)
		usage(stderr, app.Config().AppName)
		return 2
	}
	if g.version {
		fmt.Fprintln(stdout, versionLine(app.Config()))
		return 0
	}
	if g.workdir != "" {
		if err := os.Chdir(g.workdir); err != nil {
			fmt.Fprintln(stderr, "gworker: --workdir:", err)
			return 1
		}
	}
	switch cmd {
	case "worker":
		return runWorker(ctx, app, g, rest, stdout, stderr)
	case "call", "result":
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		if cmd == "call" {
			return runCall(ctx, app, g, rest, stdout, stderr)
		}
		return runResult(ctx, app, g, rest, stdout, stderr)
	case "inspect", "control", "status":
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		if cmd == "status" {
			return runRemote(ctx, app, g, "inspect", append([]string{"ping"}, rest...), stdout, stderr)
		}
		return runRemote(ctx, app, g, cmd, rest, stdout, stderr)
	case "help":
		usage(stdout, app.Config().AppName)
		return 0
	case "version":
		fmt.Fprintln(stdout, versionLine(app.Config()))
		return 0
	}
	fmt.Fprintf(stderr, "gworker: unknown command %q\n", cmd)
	usage(stderr, app.Config().AppName)
	return 2
}

// versionLine is what --version prints: gworker's version, or the
// program's (Config.AppVersion) with gworker's beside it.
func versionLine(cfg config.Config) string {
	if cfg.AppVersion == "" {
		return version.Version
	}
	return cfg.AppVersion + " (gworker " + version.Version + ")"
}

func usage(w io.Writer, name string) {
	if name == "" {
		name = config.DefaultAppName
	}
	fmt.Fprint(w, strings.ReplaceAll(`Usage:
  gworker [global flags] [worker] [flags]   run a worker (the default command)
  gworker [global flags] call NAME [flags]  send a task, print its id (or its result with --wait)
  gworker [global flags] result ID [flags]  print a task's result as JSON (--group for a GroupResult)
  gworker [global flags] inspect METHOD [ARG...] [flags]  ask Celery and gworker nodes (ping, stats, active, registered, ...)
  gworker [global flags] control METHOD [ARG...] [flags]  steer them (revoke, terminate, rate_limit, pool_grow, shutdown, ...)
  gworker [global flags] status [flags]    list the nodes that answer a ping
  gworker --version

Global flags (also accepted after the command):
  -b, --broker URL            broker URL (env CELERY_BROKER_URL)
      --result-backend URL    result backend URL: redis://..., rpc:// (env CELERY_RESULT_BACKEND)
      --broker-transport-option KEY=VALUE
                              a Redis broker's transport option (visibility_timeout=3600, ...); repeatable
      --workdir DIR           change to DIR first
  -A, --app, --loader, --config, -C, --no-color, -q, --quiet: accepted as celery's

Run "gworker COMMAND --help" for a command's flags.
`, "gworker ", name+" "))
}

var commands = map[string]bool{"worker": true, "call": true, "result": true, "help": true, "version": true,
	"inspect": true, "control": true, "status": true}

// globalFlags are celery's options before the command; every command
// accepts them after it too.
type globalFlags struct {
	app, broker, backend, loader, config, workdir string
	noColor, quiet, version                       bool
	// transportOptions are --broker-transport-option KEY=VALUE flags.
	transportOptions optionsFlag
	// set records which were given on the command line.
	set map[string]bool
}

func (g *globalFlags) register(fs *pflag.FlagSet, cfg config.Config) {
	if g.broker == "" {
		g.broker = cfg.ResolvedBrokerURL()
	}
	if g.backend == "" {
		g.backend = cfg.ResolvedResultBackend()
	}
	fs.StringVarP(&g.broker, "broker", "b", g.broker, "broker URL (env CELERY_BROKER_URL)")
	if g.transportOptions == nil {
		g.transportOptions = optionsFlag{}
	}
	fs.Var(g.transportOptions, "broker-transport-option", "KEY=VALUE: a kombu broker transport option (visibility_timeout=3600, master_name=mymaster, global_keyprefix=..., ...); repeatable")
	fs.StringVar(&g.backend, "result-backend", g.backend, "result backend URL: redis://..., rediss://..., rpc:// or disabled:// (env CELERY_RESULT_BACKEND)")
	// The defaults shown by --help never carry a password.
	fs.Lookup("broker").DefValue = redact.URL(g.broker)
	fs.Lookup("result-backend").DefValue = redact.URL(g.backend)
	fs.StringVarP(&g.app, "app", "A", g.app, "celery's Python app; accepted and ignored: gworker's tasks are the Go functions compiled in")
	fs.StringVar(&g.loader, "loader", g.loader, "celery's loader; accepted and ignored")
	fs.StringVar(&g.config, "config", g.config, "celery's config module; accepted and ignored")
	fs.StringVar(&g.workdir, "workdir", g.workdir, "change to this directory first")
	fs.BoolVarP(&g.noColor, "no-color", "C", g.noColor, "no colours (gworker prints none)")
	fs.BoolVarP(&g.quiet, "quiet", "q", g.quiet, "print no banner")
}

// optionsFlag collects KEY=VALUE flags.
type optionsFlag map[string]string

func (o optionsFlag) String() string {
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k+"="+o[k])
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func (o optionsFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("want KEY=VALUE, e.g. visibility_timeout=3600")
	}
	o[strings.TrimSpace(k)] = val
	return nil
}

func (o optionsFlag) Type() string { return "KEY=VALUE" }

// apply merges the transport options given on the command line into cfg.
func (o optionsFlag) apply(cfg *config.Config) {
	if len(o) == 0 {
		return
	}
	merged := make(map[string]string, len(cfg.BrokerTransportOptions)+len(o))
	for k, v := range cfg.BrokerTransportOptions {
		merged[k] = v
	}
	for k, v := range o {
		merged[k] = v
	}
	cfg.BrokerTransportOptions = merged
}

// applyConnection sets the broker, its transport options and the result
// backend given on the command line in cfg; --result-backend "" disables
// results.
func (g *globalFlags) applyConnection(cfg *config.Config) {
	if g.set["broker"] {
		cfg.BrokerURL = g.broker
	}
	g.transportOptions.apply(cfg)
	if g.set["result-backend"] {
		cfg.ResultBackend = g.backend
		if cfg.ResultBackend == "" {
			cfg.ResultBackend = "disabled://"
		}
	}
}

// noteSet records the global flags given in fs.
func (g *globalFlags) noteSet(fs *pflag.FlagSet) {
	if g.set == nil {
		g.set = map[string]bool{}
	}
	fs.Visit(func(f *pflag.Flag) { g.set[f.Name] = true })
}

// splitCommand reads the global flags before the command and returns the
// command and its arguments. Without a command, or when what comes first
// are worker flags, the command is worker.
func splitCommand(g *globalFlags, args []string, cfg config.Config) (string, []string, error) {
	fs := pflag.NewFlagSet("gworker", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SetInterspersed(false)
	g.register(fs, cfg)
	fs.BoolVar(&g.version, "version", false, "print the version")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return "", nil, err
		}
		// A worker flag before any command: the whole line is the
		// worker's (gworker -Q go -c 4).
		return "worker", args, nil
	}
	g.noteSet(fs)
	rest := fs.Args()
	if len(rest) > 0 && commands[rest[0]] {
		return rest[0], rest[1:], nil
	}
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		return rest[0], rest[1:], nil // an unknown command, reported
	}
	return "worker", rest, nil
}

// newFlagSet is a command's flag set with the global flags in it. Parse
// errors are returned, not printed; --help prints the flags on stdout.
func newFlagSet(name string, g *globalFlags, cfg config.Config, stdout io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet("gworker "+name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: gworker %s [flags]\n", commandUsage[name])
		if methods := control.Methods(name); methods != nil {
			fmt.Fprintf(stdout, "\nMethods: %s\n", strings.Join(methods, ", "))
		}
		fmt.Fprintf(stdout, "\nFlags:\n%s", fs.FlagUsages())
	}
	g.register(fs, cfg)
	return fs
}

var commandUsage = map[string]string{
	"worker":  "[worker]",
	"call":    "call NAME",
	"result":  "result ID | --group GID",
	"inspect": "inspect METHOD [ARG...]",
	"control": "control METHOD [ARG...]",
}

// secondsValue is a duration flag that takes seconds as celery does
// (3600, 1.5) or a Go duration (1h, 90s).
type secondsValue struct{ d *time.Duration }

func (s secondsValue) String() string {
	if s.d == nil {
		return "0"
	}
	return strconv.FormatFloat(s.d.Seconds(), 'f', -1, 64)
}

func (s secondsValue) Set(v string) error {
	d, err := parseSeconds(v)
	if err != nil {
		return err
	}
	*s.d = d
	return nil
}

func (s secondsValue) Type() string { return "seconds" }

// parseSeconds reads "3600", "1.5" or a Go duration ("1h30m").
func parseSeconds(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f < 0 {
			return 0, fmt.Errorf("%q: must not be negative", v)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q: want seconds (3600, 1.5) or a duration (1h, 90s)", v)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q: must not be negative", v)
	}
	return d, nil
}

// parseArgs parses a command's flags; a positional argument may stand
// before or after them.
func parseArgs(fs *pflag.FlagSet, args []string) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return fs.Args(), nil
}

// usageError reports a command-line mistake: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/gworker/gworker/internal/logging"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// connectTimeout bounds how long call, result, inspect and control wait
// for the broker before they fail and say why.
const connectTimeout = 20 * time.Second

// clientLogLevel is the log level of call, result, inspect and control:
// warnings only, so that the output is the command's.
const clientLogLevel = "WARNING"

// configureClient applies the connection flags to app's Config for call,
// result, inspect and control, with a logger at loglevel on stderr unless
// the App brings its own.
func configureClient(app App, g *globalFlags, loglevel string, stderr io.Writer) error {
	cfg := app.Config()
	g.applyConnection(&cfg)
	if cfg.Logger == nil {
		l, err := logging.New(loglevel, stderr)
		if err != nil {
			return err
		}
		cfg.Logger = l
	}
	return app.Configure(cfg)
}

// connectClient connects a command's App, giving up after connectTimeout:
// a command says why rather than wait forever.
func connectClient(ctx context.Context, app App) error {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	return app.Connect(cctx)
}

// runCall is celery call: send a task, print its id or, with --wait, its
// result.
func runCall(ctx context.Context, app App, g *globalFlags, args []string, stdout, stderr io.Writer) int {
	var (
		argsJSON, kwargsJSON, queue, exchange, routingKey string
		eta, expires, serializer, taskID, loglevel        string
		countdown, timeout                                float64
		wait                                              bool
	)
	cfg := app.Config()
	fs := newFlagSet("call", g, cfg, stdout)
	fs.StringVarP(&argsJSON, "args", "a", "[]", "positional arguments as a JSON list")
	fs.StringVarP(&kwargsJSON, "kwargs", "k", "{}", "keyword arguments as a JSON object")
	fs.StringVar(&eta, "eta", "", "ISO-8601 time before which the task must not run")
	fs.Float64Var(&countdown, "countdown", 0, "seconds before the task may run")
	fs.StringVar(&expires, "expires", "", "ISO-8601 time, or seconds from now, after which the task is revoked")
	fs.StringVar(&serializer, "serializer", cfg.Serializer, "json or msgpack")
	fs.StringVarP(&queue, "queue", "Q", "", "queue to send to (default: the default queue)")
	fs.StringVar(&exchange, "exchange", "", "exchange to publish to")
	fs.StringVar(&routingKey, "routing-key", "", "routing key to publish with")
	fs.BoolVar(&wait, "wait", false, "wait for the result and print it as JSON")
	fs.Float64Var(&timeout, "timeout", 0, "with --wait: give up after this many seconds (0: wait forever)")
	fs.StringVar(&taskID, "task-id", "", "the task's id (default: a new uuid4)")
	fs.StringVarP(&loglevel, "loglevel", "l", clientLogLevel, "log level")
	rest, err := parseArgs(fs, args)
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "gworker call:", err)
		return 2
	}
	g.noteSet(fs)
	if len(rest) != 1 {
		fmt.Fprintln(stderr, "gworker call: give one task name: gworker call NAME [flags]")
		return 2
	}
	name := rest[0]
	posArgs, err := parseJSONList(argsJSON)
	if err != nil {
		fmt.Fprintln(stderr, "gworker call: --args:", err)
		return 2
	}
	kwargs, err := parseJSONObject(kwargsJSON)
	if err != nil {
		fmt.Fprintln(stderr, "gworker call: --kwargs:", err)
		return 2
	}
	opts := []producer.Option{producer.Serializer(serializer)}
	if queue != "" {
		opts = append(opts, producer.Queue(queue))
	}
	if exchange != "" {
		opts = append(opts, producer.Exchange(exchange))
	}
	if routingKey != "" {
		opts = append(opts, producer.RoutingKey(routingKey))
	}
	if taskID != "" {
		opts = append(opts, producer.TaskID(taskID))
	}
	if countdown != 0 {
		opts = append(opts, producer.Countdown(time.Duration(countdown*float64(time.Second))))
	}
	if eta != "" {
		t, err := protocol.ParseTime(eta)
		if err != nil {
			fmt.Fprintln(stderr, "gworker call: --eta:", err)
			return 2
		}
		opts = append(opts, producer.ETA(t))
	}
	if expires != "" {
		if secs, err := strconv.ParseFloat(strings.TrimSpace(expires), 64); err == nil {
			opts = append(opts, producer.ExpiresIn(time.Duration(secs*float64(time.Second))))
		} else if t, err := protocol.ParseTime(expires); err == nil {
			opts = append(opts, producer.Expires(t))
		} else {
			fmt.Fprintln(stderr, "gworker call: --expires: want an ISO-8601 time or seconds:", err)
			return 2
		}
	}
	if err := configureClient(app, g, loglevel, stderr); err != nil {
		fmt.Fprintln(stderr, "gworker call:", err)
		return 2
	}
	defer app.Close()
	if err := connectClient(ctx, app); err != nil {
		fmt.Fprintln(stderr, "gworker call:", err)
		return 1
	}
	res, err := app.SendTask(ctx, name, posArgs, kwargs, opts...)
	if err != nil {
		fmt.Fprintln(stderr, "gworker call:", err)
		return 1
	}
	if !wait {
		fmt.Fprintln(stdout, res.ID())
		return 0
	}
	if b, _ := app.Backend(ctx); b == nil {
		fmt.Fprintln(stderr, "gworker call: --wait needs --result-backend")
		return 2
	}
	var getOpts []result.GetOption
	if timeout > 0 {
		getOpts = append(getOpts, result.WithTimeout(time.Duration(timeout*float64(time.Second))))
	}
	v, err := res.Get(ctx, getOpts...)
	if err != nil {
		fmt.Fprintf(stderr, "gworker call: %v\n", err)
		return 1
	}
	return printJSON(stdout, stderr, v)
}

func printJSON(stdout, stderr io.Writer, v any) int {
	out, err := protocol.MarshalJSON(v)
	if err != nil {
		fmt.Fprintln(stderr, "gworker: cannot print the result as JSON:", err)
		return 1
	}
	fmt.Fprintln(stdout, string(out))
	return 0
}

func parseJSONList(s string) ([]any, error) {
	v, err := protocol.UnmarshalJSON([]byte(s))
	if err != nil {
		return nil, err
	}
	l, ok := v.([]any)
	if !ok {
		return nil, errors.New("must be a JSON list, e.g. [2, 2]")
	}
	return l, nil
}

func parseJSONObject(s string) (map[string]any, error) {
	v, err := protocol.UnmarshalJSON([]byte(s))
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New(`must be a JSON object, e.g. {"y": 3}`)
	}
	return m, nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// splitCommandArgs lets the positional argument stand before or after the
// flags: "call NAME --wait" and "call --wait NAME".
func splitCommandArgs(fs *flag.FlagSet, args []string) (string, error) {
	var pos string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		pos, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	rest := fs.Args()
	if pos == "" && len(rest) > 0 {
		pos, rest = rest[0], rest[1:]
		if err := fs.Parse(rest); err != nil {
			return "", err
		}
		rest = fs.Args()
	}
	if len(rest) > 0 {
		return "", fmt.Errorf("unexpected arguments: %v", rest)
	}
	return pos, nil
}

func runCall(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var (
		c          commonFlags
		argsJSON   string
		kwargsJSON string
		queue      string
		countdown  float64
		serializer string
		wait       bool
		timeout    float64
		loglevel   string
		taskID     string
	)
	fs := flag.NewFlagSet("gworker call", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	fs.StringVar(&argsJSON, "args", "[]", "positional arguments as a JSON list")
	fs.StringVar(&argsJSON, "a", "[]", "shorthand for --args")
	fs.StringVar(&kwargsJSON, "kwargs", "{}", "keyword arguments as a JSON object")
	fs.StringVar(&kwargsJSON, "k", "{}", "shorthand for --kwargs")
	fs.StringVar(&queue, "queue", "", "queue to send to (default celery)")
	fs.StringVar(&queue, "Q", "", "shorthand for --queue")
	fs.Float64Var(&countdown, "countdown", 0, "seconds before the task may run")
	fs.StringVar(&serializer, "serializer", "json", "json or msgpack")
	fs.BoolVar(&wait, "wait", false, "wait for the result and print it as JSON")
	fs.Float64Var(&timeout, "timeout", 0, "with --wait: give up after this many seconds (0: wait forever)")
	fs.StringVar(&taskID, "task-id", "", "the task's id (default: a new uuid4)")
	fs.StringVar(&loglevel, "loglevel", "WARNING", "log level")
	fs.StringVar(&loglevel, "l", "WARNING", "shorthand for --loglevel")
	name, err := splitCommandArgs(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "gworker call:", err)
		return 2
	}
	if name == "" {
		fmt.Fprintln(stderr, "gworker call: the task name is required: gworker call NAME [flags]")
		return 2
	}
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
	log, err := buildLogger(loglevel, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "gworker call:", err)
		return 2
	}
	e, err := connect(ctx, c, 24*time.Hour, log, roleClient)
	if err != nil {
		fmt.Fprintln(stderr, "gworker call:", err)
		return 1
	}
	defer e.Close()
	opts := []producer.Option{producer.Serializer(serializer)}
	if queue != "" {
		opts = append(opts, producer.Queue(queue))
	}
	if taskID != "" {
		opts = append(opts, producer.TaskID(taskID))
	}
	if countdown != 0 {
		opts = append(opts, producer.Countdown(time.Duration(countdown*float64(time.Second))))
	}
	res, err := e.Producer.SendTask(ctx, name, posArgs, kwargs, opts...)
	if err != nil {
		fmt.Fprintln(stderr, "gworker call:", err)
		return 1
	}
	if !wait {
		fmt.Fprintln(stdout, res.ID())
		return 0
	}
	if e.Backend == nil {
		fmt.Fprintln(stderr, "gworker call: --wait needs --result-backend")
		return 2
	}
	getOpts := []result.GetOption{}
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

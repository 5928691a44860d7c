package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/gworker/gworker/control"
	"github.com/gworker/gworker/protocol"
)

// runRemote is `gworker inspect` and `gworker control` (and `status`): it
// broadcasts a command to Celery and gworker nodes and prints their replies
// as celery's CLI does.
func runRemote(ctx context.Context, app App, g *globalFlags, kind string, args []string, stdout, stderr io.Writer) int {
	var (
		timeout     float64
		dest, extra string
		asJSON      bool
		queue       = control.QueueOptions{Durable: app.Config().ControlQueueDurable, Exclusive: app.Config().ControlQueueExclusive}
	)
	fs := newFlagSet(kind, g, app.Config(), stdout)
	fs.Float64VarP(&timeout, "timeout", "t", control.DefaultTimeout.Seconds(), "seconds to wait for replies")
	fs.BoolVar(&queue.Exclusive, "control-queue-exclusive", queue.Exclusive, "declare the reply queue exclusive (control_queue_exclusive; RabbitMQ 4.3 refuses transient ones)")
	fs.BoolVar(&queue.Durable, "control-queue-durable", queue.Durable, "declare the reply queue durable (control_queue_durable)")
	fs.StringVarP(&dest, "destination", "d", "", "comma-separated node names (default: every node)")
	fs.BoolVarP(&asJSON, "json", "j", false, "print the replies as one JSON object")
	fs.StringVar(&extra, "args", "", `arguments as a JSON object, e.g. '{"n": 2}' (added to the positional ones)`)
	pos, err := parseArgs(fs, args)
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "gworker %s: %v\n", kind, err)
		return 2
	}
	g.noteSet(fs)
	if len(pos) == 0 {
		fmt.Fprintf(stderr, "gworker %s: give a method, e.g. gworker %s ping\n", kind, kind)
		return 2
	}
	if err := queue.Validate(); err != nil {
		fmt.Fprintf(stderr, "gworker %s: %v\n", kind, err)
		return 2
	}
	method := pos[0]
	if methods := control.Methods(kind); !slices.Contains(methods, method) {
		// As celery's command line (click's choice parameter).
		choice := "{" + strings.Join(methods, "|") + "}"
		quoted := make([]string, len(methods))
		for i, m := range methods {
			quoted[i] = "'" + m + "'"
		}
		fmt.Fprintf(stderr, "Usage: gworker %s [OPTIONS] %s\nTry 'gworker %s --help' for help.\n\nError: Invalid value for '%s': '%s' is not one of %s.\n",
			kind, choice, kind, choice, method, strings.Join(quoted, ", "))
		return 2
	}
	arguments, err := control.ParseArgs(method, pos[1:])
	if err != nil {
		fmt.Fprintf(stderr, "gworker %s: %v\n", kind, err)
		return 2
	}
	if extra != "" {
		v, err := protocol.UnmarshalJSON([]byte(extra))
		m, ok := v.(map[string]any)
		if err != nil || !ok {
			fmt.Fprintf(stderr, "gworker %s: --args must be a JSON object\n", kind)
			return 2
		}
		for k, x := range m {
			arguments[k] = x
		}
	}
	if err := configureClient(app, g, clientLogLevel, stderr); err != nil {
		fmt.Fprintf(stderr, "gworker %s: %v\n", kind, err)
		return 2
	}
	defer app.Close()
	if err := connectClient(ctx, app); err != nil {
		fmt.Fprintf(stderr, "gworker %s: %v\n", kind, err)
		return 1
	}
	client, err := app.Control(ctx)
	if err == nil {
		client, err = client.WithReplyQueue(queue)
	}
	if err != nil {
		fmt.Fprintf(stderr, "gworker %s: %v\n", kind, err)
		return 1
	}
	o := control.BroadcastOptions{Reply: control.ExpectsReply(method), Timeout: time.Duration(timeout * float64(time.Second))}
	if dest != "" {
		o.Destination = splitList(dest)
	}
	replies, err := client.Broadcast(ctx, method, arguments, o)
	if !o.Reply && err == nil {
		fmt.Fprintf(stdout, "-> sent %s\n", method)
		return 0
	}
	if errors.Is(err, control.ErrNoReply) {
		fmt.Fprintln(stderr, "Error: No nodes replied within time constraint")
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "gworker %s: %v\n", kind, err)
		return 1
	}
	sort.Slice(replies, func(i, j int) bool { return replies[i].Node < replies[j].Node })
	if asJSON {
		all := protocol.Dict{}
		for _, r := range replies {
			all = append(all, protocol.Item{Key: r.Node, Value: r.Value})
		}
		b, err := protocol.MarshalJSON(all)
		if err != nil {
			fmt.Fprintf(stderr, "gworker %s: %v\n", kind, err)
			return 1
		}
		fmt.Fprintln(stdout, string(b))
		return 0
	}
	failed := false
	for _, r := range replies {
		status, text := "OK", ""
		if m, ok := r.Value.(map[string]any); ok && len(m) == 1 {
			if s, ok := m["ok"].(string); ok {
				text = s
			} else if s, ok := m["error"].(string); ok {
				status, text, failed = "ERROR", s, true
			}
		}
		if text == "" && r.Value != nil {
			text = pretty(r.Value)
		}
		fmt.Fprintf(stdout, "->  %s: %s\n", r.Node, status)
		if text != "" {
			fmt.Fprintln(stdout, indent(text, "        "))
		}
	}
	fmt.Fprintf(stdout, "\n%d node%s online.\n", len(replies), plural(len(replies)))
	if failed {
		return 1
	}
	return 0
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func pretty(v any) string {
	b, err := protocol.MarshalJSON(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	var x any
	if json.Unmarshal(b, &x) != nil {
		return string(b)
	}
	out, err := json.MarshalIndent(x, "", "    ")
	if err != nil {
		return string(b)
	}
	return string(out)
}

func indent(s, pre string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = pre + l
	}
	return strings.Join(lines, "\n")
}

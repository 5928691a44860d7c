package gworker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/gworker/gworker/control"
	"github.com/gworker/gworker/protocol"
)

// param is one positional argument of a remote command, as celery's CLI
// maps them (Panel signatures).
type param struct {
	name     string
	kind     string // "str", "int", "float", "bool"
	variadic bool   // takes every remaining argument, as a list
}

// remoteParams are the positional arguments of the commands that take any.
var remoteParams = map[string][]param{
	"active":          {{name: "safe", kind: "bool"}},
	"registered":      {{name: "taskinfoitems", kind: "str", variadic: true}},
	"query_task":      {{name: "ids", kind: "str", variadic: true}},
	"conf":            {{name: "with_defaults", kind: "bool"}},
	"revoke":          {{name: "task_id", kind: "str", variadic: true}},
	"terminate":       {{name: "signal", kind: "str"}, {name: "task_id", kind: "str", variadic: true}},
	"rate_limit":      {{name: "task_name", kind: "str"}, {name: "rate_limit", kind: "str"}},
	"time_limit":      {{name: "task_name", kind: "str"}, {name: "soft", kind: "float"}, {name: "hard", kind: "float"}},
	"add_consumer":    {{name: "queue", kind: "str"}, {name: "exchange", kind: "str"}, {name: "exchange_type", kind: "str"}, {name: "routing_key", kind: "str"}},
	"cancel_consumer": {{name: "queue", kind: "str"}},
	"pool_grow":       {{name: "n", kind: "int"}},
	"pool_shrink":     {{name: "n", kind: "int"}},
	"autoscale":       {{name: "max", kind: "int"}, {name: "min", kind: "int"}},
}

// castCommands are sent without waiting for replies, as celery does.
var castCommands = map[string]bool{"shutdown": true}

func remoteArgs(method string, pos []string) (map[string]any, error) {
	out := map[string]any{}
	ps := remoteParams[method]
	for i := 0; i < len(pos); i++ {
		if i >= len(ps) {
			return nil, fmt.Errorf("%s takes at most %d arguments", method, len(ps))
		}
		p := ps[i]
		if p.variadic {
			l := make([]any, 0, len(pos)-i)
			for _, s := range pos[i:] {
				l = append(l, s)
			}
			out[p.name] = l
			break
		}
		s := pos[i]
		switch p.kind {
		case "int":
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %s must be an integer", method, p.name)
			}
			out[p.name] = n
		case "float":
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %s must be a number", method, p.name)
			}
			out[p.name] = f
		case "bool":
			out[p.name] = s == "1" || strings.EqualFold(s, "true") || strings.EqualFold(s, "yes")
		default:
			out[p.name] = s
		}
	}
	return out, nil
}

// runRemote is `gworker inspect` and `gworker control` (and `status`): it
// broadcasts a command to Celery and gworker nodes and prints their replies
// as celery's CLI does.
func (a *App) runRemote(ctx context.Context, g *globalFlags, kind string, args []string, stdout, stderr io.Writer) int {
	var (
		timeout     float64
		dest, extra string
		asJSON      bool
		queue       = control.QueueOptions{Durable: a.cfg.ControlQueueDurable, Exclusive: a.cfg.ControlQueueExclusive}
	)
	fs := newFlagSet(kind, g, a.cfg, stdout)
	fs.BoolVar(&queue.Exclusive, "control-queue-exclusive", queue.Exclusive, "declare the reply queue exclusive (control_queue_exclusive; RabbitMQ 4.3 refuses transient ones)")
	fs.BoolVar(&queue.Durable, "control-queue-durable", queue.Durable, "declare the reply queue durable (control_queue_durable)")
	fs.Float64VarP(&timeout, "timeout", "t", 1, "seconds to wait for replies")
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
	arguments, err := remoteArgs(method, pos[1:])
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
	c, err := a.clientApp(g, "WARNING", stderr)
	if err != nil {
		fmt.Fprintf(stderr, "gworker %s: %v\n", kind, err)
		return 2
	}
	defer c.Close()
	if err := connectClient(ctx, c); err != nil {
		fmt.Fprintf(stderr, "gworker %s: %v\n", kind, err)
		return 1
	}
	client, _ := control.NewClient(c.conn.broker, nil, c.log()).WithReplyQueue(queue) // validated above
	o := control.BroadcastOptions{Reply: !castCommands[method], Timeout: time.Duration(timeout * float64(time.Second))}
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

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// runResult is celery result: print a stored result as JSON.
func runResult(ctx context.Context, app App, g *globalFlags, args []string, stdout, stderr io.Writer) int {
	var (
		group     string
		meta      bool
		traceback bool
	)
	fs := newFlagSet("result", g, app.Config(), stdout)
	fs.StringVar(&group, "group", "", "print the members' results of the saved GroupResult with this id")
	fs.BoolVar(&meta, "meta", false, "print the whole stored meta: status, result, traceback, children, date_done")
	fs.BoolVarP(&traceback, "traceback", "t", false, "print the traceback instead of the result")
	rest, err := parseArgs(fs, args)
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "gworker result:", err)
		return 2
	}
	g.noteSet(fs)
	if len(rest) > 1 || (len(rest) == 1) == (group != "") {
		fmt.Fprintln(stderr, "gworker result: give a task id or --group GID")
		return 2
	}
	if err := configureClient(app, g, clientLogLevel, stderr); err != nil {
		fmt.Fprintln(stderr, "gworker result:", err)
		return 2
	}
	defer app.Close()
	if app.Config().ResolvedResultBackend() == "" {
		fmt.Fprintln(stderr, "gworker result: --result-backend (or CELERY_RESULT_BACKEND) is required")
		return 2
	}
	if err := connectClient(ctx, app); err != nil {
		fmt.Fprintln(stderr, "gworker result:", err)
		return 1
	}
	b, _ := app.Backend(ctx)
	if group != "" {
		gr, err := result.RestoreGroup(ctx, b, group)
		if err != nil {
			fmt.Fprintln(stderr, "gworker result:", err)
			return 1
		}
		out := []any{}
		for _, r := range gr.Results() {
			v, err := describe(ctx, b, r.ID(), meta, traceback)
			if err != nil {
				fmt.Fprintln(stderr, "gworker result:", err)
				return 1
			}
			out = append(out, v)
		}
		return printJSON(stdout, stderr, out)
	}
	v, err := describe(ctx, b, rest[0], meta, traceback)
	if err != nil {
		fmt.Fprintln(stderr, "gworker result:", err)
		return 1
	}
	return printJSON(stdout, stderr, v)
}

// describe returns what `gworker result` prints for one task: its result
// value (the exception dict for failures, null while pending), its
// traceback, or its whole meta.
func describe(ctx context.Context, b result.Backend, id string, meta, tb bool) (any, error) {
	m, err := b.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	switch {
	case meta:
		d := protocol.Dict{
			{Key: "task_id", Value: m.TaskID}, {Key: "status", Value: string(m.Status)},
			{Key: "result", Value: m.Result}, {Key: "traceback", Value: nullable(m.Traceback)},
			{Key: "children", Value: orEmpty(m.Children)},
		}
		if m.DateDone != nil {
			d = append(d, protocol.Item{Key: "date_done", Value: protocol.FormatDateDone(*m.DateDone)})
		}
		return d, nil
	case tb:
		return nullable(m.Traceback), nil
	}
	return m.Result, nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func orEmpty(l []any) []any {
	if l == nil {
		return []any{}
	}
	return l
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

func runResult(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var (
		c         commonFlags
		group     string
		meta      bool
		traceback bool
	)
	fs := flag.NewFlagSet("gworker result", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	fs.StringVar(&group, "group", "", "print the members' results of the saved GroupResult with this id")
	fs.BoolVar(&meta, "meta", false, "print the whole stored meta: status, result, traceback, children, date_done")
	fs.BoolVar(&traceback, "traceback", false, "print the traceback instead of the result")
	fs.BoolVar(&traceback, "t", false, "shorthand for --traceback")
	id, err := splitCommandArgs(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "gworker result:", err)
		return 2
	}
	if (id == "") == (group == "") {
		fmt.Fprintln(stderr, "gworker result: give a task id or --group GID")
		return 2
	}
	if c.backend == "" {
		fmt.Fprintln(stderr, "gworker result: --result-backend (or CELERY_RESULT_BACKEND) is required")
		return 2
	}
	log, _ := buildLogger("WARNING", stderr)
	e, err := connect(ctx, c, 24*time.Hour, log, roleClient)
	if err != nil {
		fmt.Fprintln(stderr, "gworker result:", err)
		return 1
	}
	defer e.Close()

	if group != "" {
		g, err := result.RestoreGroup(ctx, e.Backend, group)
		if err != nil {
			fmt.Fprintln(stderr, "gworker result:", err)
			return 1
		}
		var out []any
		for _, r := range g.Results() {
			v, err := describe(ctx, e.Backend, r.ID(), meta, traceback)
			if err != nil {
				fmt.Fprintln(stderr, "gworker result:", err)
				return 1
			}
			out = append(out, v)
		}
		if out == nil {
			out = []any{}
		}
		return printJSON(stdout, stderr, out)
	}
	v, err := describe(ctx, e.Backend, id, meta, traceback)
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

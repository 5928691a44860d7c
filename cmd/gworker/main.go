// Command gworker runs Go tasks for Celery: `gworker worker` consumes task
// messages as a Celery worker does, `gworker call` sends a task and
// `gworker result` prints a stored result. Flags are named as `celery`'s.
//
//	gworker --broker amqp://guest:guest@localhost:5672// --result-backend redis://localhost:6379/0 -Q celery -c 8
//	gworker call tasks.add --args '[2, 2]' --wait
//	gworker result <task-id>
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is the gworker version printed in the banner.
const version = "0.1.0"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "worker"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "worker":
		return runWorker(args, stdout, stderr)
	case "call":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runCall(ctx, args, stdout, stderr)
	case "result":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runResult(ctx, args, stdout, stderr)
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	case "version", "--version":
		fmt.Fprintln(stdout, version)
		return 0
	}
	fmt.Fprintf(stderr, "gworker: unknown command %q\n", cmd)
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  gworker [worker] [flags]   run a worker (the default command)
  gworker call NAME [flags]  send a task, print its id (or its result with --wait)
  gworker result ID [flags]  print a task's result as JSON (--group for a GroupResult)

Run "gworker COMMAND -h" for a command's flags.
`)
}

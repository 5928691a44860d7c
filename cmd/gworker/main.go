// Command gworker runs Go tasks for Celery with demo tasks compiled in:
// `gworker worker` consumes task messages as a Celery worker does,
// `gworker call` sends a task and `gworker result` prints a stored result.
// Flags are celery's. It is the program a service writes with the gworker
// package, plus the demo tasks:
//
//	gworker --broker amqp://guest:guest@localhost:5672// --result-backend redis://localhost:6379/0 -Q celery -c 8
//	gworker call tasks.add --args '[2, 2]' --wait
//	gworker result <task-id>
//
// It traces tasks with OpenTelemetry as package tracing does, configured by
// the standard OTEL_* environment variables (OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_SERVICE_NAME, OTEL_PROPAGATORS...):
// spans are exported only when an exporter is configured, and the trace
// context of the messages it receives passes on into those it publishes
// either way.
//
// Beside the App's result backends it has the SQL ones (package
// result/sqlbackend). Two build tags leave parts out for a smaller
// program: gworker_nosql the SQL backends and their drivers, gworker_nootlp
// the OTLP exporters.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/gworker/gworker"
	"github.com/gworker/gworker/demo"
	"github.com/gworker/gworker/tracing"
)

// flushTimeout bounds the export of the last spans at exit.
const flushTimeout = 5 * time.Second

func main() { os.Exit(run()) }

func run() int {
	ctx := context.Background()
	tr, err := tracing.FromEnv(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gworker:", err)
		return 1
	}
	defer func() {
		fctx, cancel := context.WithTimeout(ctx, flushTimeout)
		defer cancel()
		if err := tr.Shutdown(fctx); err != nil {
			fmt.Fprintln(os.Stderr, "gworker: tracing:", err)
		}
	}()
	app := gworker.New(gworker.Config{}, gworker.WithResultBackend(extraBackends...),
		gworker.WithMiddleware(tr.TaskMiddleware()), gworker.WithPublishMiddleware(tr.PublishMiddleware()))
	if err := demo.Register(app.Registry()); err != nil {
		fmt.Fprintln(os.Stderr, "gworker:", err)
		return 1
	}
	if err := demo.RegisterClientTasks(app.Registry(), app); err != nil {
		fmt.Fprintln(os.Stderr, "gworker:", err)
		return 1
	}
	return app.RunCLI(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

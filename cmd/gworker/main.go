// Command gworker runs Go tasks for Celery with demo tasks compiled in:
// `gworker worker` consumes task messages as a Celery worker does,
// `gworker call` sends a task and `gworker result` prints a stored result.
// Flags are celery's. It is the program a service writes with the gworker
// package, plus the demo tasks:
//
//	gworker --broker amqp://guest:guest@localhost:5672// --result-backend redis://localhost:6379/0 -Q celery -c 8
//	gworker call tasks.add --args '[2, 2]' --wait
//	gworker result <task-id>
package main

import (
	"fmt"
	"os"

	"github.com/gworker/gworker"
	"github.com/gworker/gworker/demo"
)

func main() {
	app := gworker.New(gworker.Config{})
	if err := demo.Register(app.Registry()); err != nil {
		fmt.Fprintln(os.Stderr, "gworker:", err)
		os.Exit(1)
	}
	if err := demo.RegisterClientTasks(app.Registry(), app); err != nil {
		fmt.Fprintln(os.Stderr, "gworker:", err)
		os.Exit(1)
	}
	app.Main()
}

package cli_test

import (
	"context"
	"fmt"
	"os"

	"github.com/gworker/gworker"
	"github.com/gworker/gworker/cli"
)

// A program runs the command line on the App its tasks are registered on;
// gworker.App.Main does so with os.Args and exits with the status.
func ExampleRun() {
	app := gworker.New(gworker.Config{})
	app.MustRegister("tasks.double", func(x int) int { return 2 * x }, gworker.Params("x"))
	status := cli.Run(context.Background(), app, []string{"call"}, os.Stdout, os.Stdout)
	fmt.Println("exit status", status)
	// Output:
	// gworker call: give one task name: gworker call NAME [flags]
	// exit status 2
}

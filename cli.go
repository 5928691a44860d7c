package gworker

import (
	"context"
	"io"
	"os"

	"github.com/gworker/gworker/cli"
	"github.com/gworker/gworker/internal/version"
)

// The App is what the command line runs on.
var _ cli.App = (*App)(nil)

// Version is the gworker version printed by --version and in the banner.
const Version = version.Version

// Main runs the gworker command line on os.Args and exits with its status:
// `worker` (the default command), `call`, `result`, `inspect`, `control`
// and `status`, with celery's flags and environment variables (package
// cli). It is what a service's main function calls after registering its
// tasks.
func (a *App) Main() {
	os.Exit(a.RunCLI(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// RunCLI runs one gworker command line (without the program name) on the
// App and returns the exit status: 0 on success and after a warm
// shutdown, 1 when the command failed, 2 for a usage error. SIGINT and
// SIGTERM stop it (twice: a cold shutdown); so does ctx. The command line
// applies its flags to the App with Configure, so the App must not be
// connected yet.
func (a *App) RunCLI(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Run(ctx, a, args, stdout, stderr)
}

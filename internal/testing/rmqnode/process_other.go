//go:build !unix

package rmqnode

import (
	"fmt"
	"runtime"
)

// killProcess fails: nodes are killed with a Unix signal, which this
// system does not have (nor the installed server's paths that Start runs).
func killProcess(pid int) error {
	return fmt.Errorf("cannot SIGKILL pid %d: no Unix signals on %s", pid, runtime.GOOS)
}

// processAlive reports false: without Unix signals a process cannot be
// probed by id here.
func processAlive(int) bool { return false }

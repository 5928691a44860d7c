//go:build unix

package rmqnode

import (
	"errors"
	"syscall"
)

// killProcess sends SIGKILL to pid; a process already gone is not an
// error.
func killProcess(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// processAlive reports whether a process with the id exists.
func processAlive(pid int) bool { return syscall.Kill(pid, 0) == nil }

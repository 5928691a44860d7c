//go:build unix

package cli

import "syscall"

// setUmask sets the process's file mode creation mask (--umask).
func setUmask(mask int) error {
	syscall.Umask(mask)
	return nil
}

// processRunning reports whether a process with the id exists and can be
// signalled by this one (--pidfile's check for a live owner).
func processRunning(pid int) bool { return syscall.Kill(pid, 0) == nil }

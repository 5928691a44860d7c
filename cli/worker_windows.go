//go:build windows

package cli

import (
	"errors"

	"golang.org/x/sys/windows"
)

// setUmask fails: Windows has no file mode creation mask, so --umask
// cannot be honoured.
func setUmask(int) error {
	return errors.New("not supported on Windows, which has no umask")
}

// stillActive is the exit code GetExitCodeProcess reports for a process
// that has not exited (STILL_ACTIVE).
const stillActive = 259

// processRunning reports whether a process with the id exists and has not
// exited (--pidfile's check for a live owner). A process this one may not
// open counts as not running, as a process it may not signal does on Unix.
func processRunning(pid int) bool {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return false
	}
	defer windows.CloseHandle(h)
	var code uint32
	if err := windows.GetExitCodeProcess(h, &code); err != nil {
		return false
	}
	return code == stillActive
}

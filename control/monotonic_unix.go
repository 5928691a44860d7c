//go:build unix

package control

import "golang.org/x/sys/unix"

// monotonic returns the system's monotonic clock in seconds, the scale of
// Python's time.monotonic() on which Celery's LimitedSet timestamps the
// revoked ids it exchanges in mingle.
func monotonic() float64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

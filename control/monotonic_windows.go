//go:build windows

package control

import (
	"unsafe"

	"golang.org/x/sys/windows"
)

var (
	kernel32        = windows.NewLazySystemDLL("kernel32.dll")
	procQPCounter   = kernel32.NewProc("QueryPerformanceCounter")
	procQPFrequency = kernel32.NewProc("QueryPerformanceFrequency")
)

// monotonic returns the system's monotonic clock in seconds, the scale of
// Python's time.monotonic() on which Celery's LimitedSet timestamps the
// revoked ids it exchanges in mingle. On Windows that is the performance
// counter, which counts from boot.
func monotonic() float64 {
	var count, freq int64
	if r, _, _ := procQPFrequency.Call(uintptr(unsafe.Pointer(&freq))); r == 0 || freq <= 0 {
		return 0
	}
	if r, _, _ := procQPCounter.Call(uintptr(unsafe.Pointer(&count))); r == 0 {
		return 0
	}
	return float64(count) / float64(freq)
}

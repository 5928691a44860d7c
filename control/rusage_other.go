//go:build !unix

package control

// rusage is the `rusage` entry of `inspect stats`. This system has no
// getrusage, so the entry is "N/A", as a Celery worker reports it where
// Python has no resource module (Windows).
func rusage() any { return "N/A" }

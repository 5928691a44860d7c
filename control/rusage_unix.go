//go:build unix

package control

import (
	"syscall"

	"github.com/gworker/gworker/protocol"
)

// rusage is the `rusage` entry of `inspect stats`: the process's
// getrusage(RUSAGE_SELF), field by field as Celery reports it. It is an
// empty dict when the call fails.
func rusage() any {
	var r syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &r); err != nil {
		return protocol.Dict{}
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return protocol.Dict{
		{Key: "utime", Value: tv(r.Utime)}, {Key: "stime", Value: tv(r.Stime)},
		{Key: "maxrss", Value: int64(r.Maxrss)}, {Key: "ixrss", Value: int64(r.Ixrss)},
		{Key: "idrss", Value: int64(r.Idrss)}, {Key: "isrss", Value: int64(r.Isrss)},
		{Key: "minflt", Value: int64(r.Minflt)}, {Key: "majflt", Value: int64(r.Majflt)},
		{Key: "nswap", Value: int64(r.Nswap)}, {Key: "inblock", Value: int64(r.Inblock)},
		{Key: "oublock", Value: int64(r.Oublock)}, {Key: "msgsnd", Value: int64(r.Msgsnd)},
		{Key: "msgrcv", Value: int64(r.Msgrcv)}, {Key: "nsignals", Value: int64(r.Nsignals)},
		{Key: "nvcsw", Value: int64(r.Nvcsw)}, {Key: "nivcsw", Value: int64(r.Nivcsw)},
	}
}

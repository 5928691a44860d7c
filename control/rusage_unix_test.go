//go:build unix

package control

import (
	"testing"

	"github.com/gworker/gworker/protocol"
)

// The rusage entry of `inspect stats` has Celery's keys, in Celery's order,
// with the process's figures.
func TestRusageLikeCelery(t *testing.T) {
	d, ok := rusage().(protocol.Dict)
	if !ok {
		t.Fatalf("rusage() = %T, want a dict", rusage())
	}
	want := []string{"utime", "stime", "maxrss", "ixrss", "idrss", "isrss", "minflt", "majflt",
		"nswap", "inblock", "oublock", "msgsnd", "msgrcv", "nsignals", "nvcsw", "nivcsw"}
	if len(d) != len(want) {
		t.Fatalf("rusage has %d keys, want %d: %v", len(d), len(want), d)
	}
	for i, it := range d {
		if it.Key != want[i] {
			t.Errorf("key %d = %q, want %q", i, it.Key, want[i])
		}
	}
	if maxrss, _ := d[2].Value.(int64); maxrss <= 0 {
		t.Errorf("maxrss = %v, want the process's peak resident size", d[2].Value)
	}
	if _, ok := d[0].Value.(float64); !ok {
		t.Errorf("utime = %T, want seconds as a float", d[0].Value)
	}
}

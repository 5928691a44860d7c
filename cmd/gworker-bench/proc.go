package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat. It is
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// procStat is what /proc/<pid>/stat says about one process.
type procStat struct {
	ppid int
	// cpu is utime+stime+cutime+cstime in clock ticks: the process's own
	// CPU time (all threads) plus that of its children it has reaped.
	cpu int64
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// fields are counted after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime..cstime 14..17.
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ppid, _ := strconv.Atoi(f[1])
	var cpu int64
	for _, k := range []int{11, 12, 13, 14} {
		n, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("/proc/%d/stat: field %d: %w", pid, k+3, err)
		}
		cpu += n
	}
	return procStat{ppid: ppid, cpu: cpu}, nil
}

// tree returns root and all its descendants, found by scanning /proc.
func tree(root int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return []int{root}
	}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue
		}
		children[st.ppid] = append(children[st.ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// treeCPU returns the CPU time used so far by root and its descendants.
func treeCPU(root int) time.Duration {
	var ticks int64
	for _, pid := range tree(root) {
		if st, err := readStat(pid); err == nil {
			ticks += st.cpu
		}
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// statusKB reads a "Key:   123 kB" line of /proc/<pid>/status.
func statusKB(pid int, key string) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// treeRSS returns the summed VmRSS of root and its descendants, in bytes.
// Pages shared between a parent and its forked children (Celery's prefork
// pool) are counted once per process, as ps and top do.
func treeRSS(root int) int64 {
	var kb int64
	for _, pid := range tree(root) {
		kb += statusKB(pid, "VmRSS")
	}
	return kb * 1024
}

// treeAnon returns the summed RssAnon of root and its descendants, in
// bytes: the processes' private memory (heap, stacks), without the pages of
// their executables and libraries (RssFile), which the kernel may map in
// large blocks around the pages a program touches, so that they grow with
// the size of the binary rather than with what it does.
func treeAnon(root int) int64 {
	var kb int64
	for _, pid := range tree(root) {
		kb += statusKB(pid, "RssAnon")
	}
	return kb * 1024
}

// rssSampler samples the tree's RSS periodically and keeps the peak, of
// the whole and of its anonymous part.
type rssSampler struct {
	once     sync.Once
	mu       sync.Mutex
	peak     int64
	peakAnon int64
	stop     chan struct{}
	done     chan struct{}
}

func sampleRSS(root int, every time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			s.observe(treeRSS(root), treeAnon(root))
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) observe(v, anon int64) {
	s.mu.Lock()
	s.peak = max(s.peak, v)
	s.peakAnon = max(s.peakAnon, anon)
	s.mu.Unlock()
}

// Stop ends sampling and returns the peak in bytes. It may be called more
// than once.
func (s *rssSampler) Stop() int64 {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// PeakAnon returns the peak of the anonymous part in bytes, once Stop has
// returned.
func (s *rssSampler) PeakAnon() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peakAnon
}

// findProcess returns the pid of the busiest process (most CPU time so far)
// whose command name (/proc/<pid>/comm) is name, or 0. The busiest one,
// because short-lived tools share the server's name (rabbitmqctl runs a
// beam.smp of its own).
func findProcess(name string) int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	best, bestCPU := 0, int64(-1)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil || strings.TrimSpace(string(b)) != name {
			continue
		}
		if st, err := readStat(pid); err == nil && st.cpu > bestCPU {
			best, bestCPU = pid, st.cpu
		}
	}
	return best
}

// processCPU returns the CPU time of one process (all its threads), or 0
// when it cannot be read.
func processCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	st, err := readStat(pid)
	if err != nil {
		return 0
	}
	return time.Duration(st.cpu) * time.Second / clockTicks
}

// counters are the system calls and context switches of a process tree so
// far: what a worker costs the kernel, steadier than CPU time on a shared
// machine.
type counters struct {
	// rw is read-like plus write-like system calls (syscr + syscw of
	// /proc/<pid>/io): a socket read or write is one each.
	rw int64
	// switches is the voluntary and involuntary context switches of every
	// thread (/proc/<pid>/task/<tid>/status): mostly a thread parking and
	// being woken.
	switches int64
}

func treeCounters(root int) counters {
	var c counters
	for _, pid := range tree(root) {
		dir := filepath.Join("/proc", strconv.Itoa(pid))
		if b, err := os.ReadFile(filepath.Join(dir, "io")); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				k, v, ok := strings.Cut(line, ":")
				if ok && (k == "syscr" || k == "syscw") {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					c.rw += n
				}
			}
		}
		tasks, _ := os.ReadDir(filepath.Join(dir, "task"))
		for _, t := range tasks {
			b, err := os.ReadFile(filepath.Join(dir, "task", t.Name(), "status"))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				k, v, ok := strings.Cut(line, ":")
				if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					c.switches += n
				}
			}
		}
	}
	return c
}

// findServer returns the pid of the process named name that listens on
// the TCP port of addr ("host:port"), so that the right server is measured
// when several run (a private node beside the shared one); without such a
// listener it falls back to findProcess.
func findServer(name, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return findProcess(name)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return findProcess(name)
	}
	if pid := listenerPID(port); pid > 0 {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); err == nil && strings.TrimSpace(string(b)) == name {
			return pid
		}
	}
	return findProcess(name)
}

// listenerPID returns the pid of a process holding a TCP socket that
// listens on port, or 0: the socket's inode from /proc/net/tcp and tcp6,
// then the process whose file descriptors include it.
func listenerPID(port int) int {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			// sl local_address rem_address st ... inode (the tenth field)
			if len(fs) < 10 || fs[3] != "0A" {
				continue
			}
			i := strings.LastIndexByte(fs[1], ':')
			if lp, err := strconv.ParseUint(fs[1][i+1:], 16, 16); err == nil && int(lp) == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := "/proc/" + e.Name() + "/fd"
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(dir + "/" + fd.Name()); err == nil && inodes[l] {
				return pid
			}
		}
	}
	return 0
}

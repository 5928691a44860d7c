package worker

import (
	"errors"
	"testing"
)

// poolProbe is a pool whose jobs block until released.
type poolProbe struct {
	started chan *job
	release chan struct{}
	back    chan *job
}

func newPoolProbe(size int) (*pool, *poolProbe) {
	p := &poolProbe{started: make(chan *job, 100), release: make(chan struct{}), back: make(chan *job, 100)}
	return newPool(size, func(j *job) { p.started <- j; <-p.release }, func(j *job) { p.back <- j }), p
}

func TestPoolRunsAtMostSizeJobsAtOnce(t *testing.T) {
	pl, p := newPoolProbe(2)
	pl.start()
	jobs := []*job{testJob(t, "t", "1", nil, TaskOptions{}), testJob(t, "t", "2", nil, TaskOptions{}), testJob(t, "t", "3", nil, TaskOptions{})}
	for _, j := range jobs {
		if !pl.push(j) {
			t.Fatal("push refused")
		}
	}
	recv(t, p.started, "first start")
	recv(t, p.started, "second start")
	// Two slots are busy: the third job waits in the queue until one ends.
	waitUntil(t, "the third job queued", func() bool { return len(pl.queued()) == 1 })
	if got := pl.queued()[0]; got != jobs[2] {
		t.Fatalf("queued %v", got.msg.ID)
	}
	p.release <- struct{}{}
	if got := recv(t, p.started, "third start"); got != jobs[2] {
		t.Fatalf("started %v", got.msg.ID)
	}
	p.release <- struct{}{}
	p.release <- struct{}{}
	if left := pl.close(); len(left) != 0 {
		t.Errorf("close returned %d jobs", len(left))
	}
	pl.wait()
	if pl.push(jobs[0]) {
		t.Error("a closed pool takes a job")
	}
}

func TestPoolGrowsAndShrinks(t *testing.T) {
	pl, p := newPoolProbe(1)
	if _, err := pl.resize(-1); !errors.Is(err, ErrPoolSize) {
		t.Fatalf("shrinking to zero: %v", err)
	}
	// Before start only the size changes.
	if n, err := pl.resize(1); err != nil || n != 2 || pl.concurrency() != 2 {
		t.Fatalf("resize before start: %d, %v", n, err)
	}
	pl.start()
	if n, _ := pl.resize(1); n != 3 {
		t.Fatalf("size %d, want 3", n)
	}
	for i := 0; i < 3; i++ {
		pl.push(testJob(t, "t", "busy", nil, TaskOptions{}))
	}
	for i := 0; i < 3; i++ {
		recv(t, p.started, "start")
	}
	// Shrink by two while all three run: the slots are retired as their
	// jobs end, so only one job runs at a time afterwards.
	if n, _ := pl.resize(-2); n != 1 || pl.concurrency() != 1 {
		t.Fatalf("size %d, want 1", n)
	}
	for i := 0; i < 3; i++ {
		p.release <- struct{}{}
	}
	a, b := testJob(t, "t", "a", nil, TaskOptions{}), testJob(t, "t", "b", nil, TaskOptions{})
	pl.push(a)
	pl.push(b)
	recv(t, p.started, "a start")
	waitUntil(t, "b queued behind a", func() bool { return len(pl.queued()) == 1 })
	p.release <- struct{}{}
	recv(t, p.started, "b start")
	p.release <- struct{}{}
	pl.close()
	pl.wait()
}

func TestPoolStopHandsBackWhatItPops(t *testing.T) {
	pl, p := newPoolProbe(1)
	pl.start()
	running := testJob(t, "t", "running", nil, TaskOptions{})
	pl.push(running)
	recv(t, p.started, "start")
	waiting := testJob(t, "t", "waiting", nil, TaskOptions{})
	pl.push(waiting)
	pl.stop()
	if n, _ := pl.resize(1); n != 2 {
		t.Fatalf("size %d", n)
	}
	p.release <- struct{}{}
	if got := recv(t, p.back, "back"); got != waiting {
		t.Fatalf("handed back %v", got.msg.ID)
	}
	pl.close()
	pl.wait()
	select {
	case j := <-p.started:
		t.Fatalf("%s started after stop", j.msg.ID)
	default:
	}
}

// A released job settles outside its slot: the slot runs the next job
// meanwhile, at most releasedPerSlot jobs per slot are released at once,
// and wait waits for the released ones too.
func TestPoolReleaseFreesTheSlotWhileAJobSettles(t *testing.T) {
	settling := make(chan *job, 100)
	finish := make(chan struct{})
	var pl *pool
	pl = newPool(1, func(j *job) {
		if j.msg.ID == "keep" {
			return
		}
		if !pl.release(j) {
			settling <- nil
			return
		}
		settling <- j
		<-finish
	}, func(*job) {})
	pl.start()
	for i := 0; i < releasedPerSlot; i++ {
		pl.push(testJob(t, "t", "slow", nil, TaskOptions{}))
	}
	for i := 0; i < releasedPerSlot; i++ {
		if j := recv(t, settling, "a released job"); j == nil {
			t.Fatalf("job %d kept its slot", i)
		}
	}
	if n := pl.released.Load(); n != releasedPerSlot {
		t.Fatalf("settling %d, want %d", n, releasedPerSlot)
	}
	// One slot, every release taken: the next job keeps its slot.
	pl.push(testJob(t, "t", "over", nil, TaskOptions{}))
	if j := recv(t, settling, "the job past the bound"); j != nil {
		t.Fatal("released past the bound")
	}
	close(finish)
	waitUntil(t, "the released jobs ended", func() bool { return pl.released.Load() == 0 })
	pl.push(testJob(t, "t", "keep", nil, TaskOptions{}))
	if left := pl.close(); len(left) > 1 {
		t.Errorf("close returned %d jobs", len(left))
	}
	pl.wait()
}

package worker

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/gworker/gworker/config"
)

// releasedPerSlot bounds the released jobs (see pool.release): at most
// this many per slot settle outside the pool at once.
const releasedPerSlot = 2

// pool runs jobs on a bounded number of goroutines, its slots, fed by one
// FIFO queue. It grows and shrinks while it runs. A running job keeps its
// slot until its task returns; what is left then (storing the result,
// acknowledging) may go on outside the pool (release).
type pool struct {
	run  func(j *job) // runs a job in a slot
	back func(j *job) // hands back a job popped after stop

	queue    *jobQueue
	slots    sync.WaitGroup // the slots, the released jobs and the spares
	stopping atomic.Bool    // set under mu
	released atomic.Int64   // jobs released and not yet ended
	// A goroutine whose released job ended waits as a spare, so that the
	// next release reuses it (and its grown stack) rather than start one:
	// a receive on spares makes it a slot again; quit ends the spares.
	spares chan struct{}
	quit   chan struct{}
	spareN atomic.Int64 // spares waiting

	mu      sync.Mutex
	size    int
	max     int // the largest size; 0: config.DefaultMaxConcurrency
	started bool
}

func newPool(size int, run, back func(j *job)) *pool {
	return &pool{run: run, back: back, queue: newJobQueue(), size: size,
		spares: make(chan struct{}), quit: make(chan struct{})}
}

// start starts the slots.
func (p *pool) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.started = true
	p.grow(p.size)
}

// grow starts n slots; p.mu is held.
func (p *pool) grow(n int) {
	p.slots.Add(n)
	for i := 0; i < n; i++ {
		go p.slot()
	}
}

// slot runs queued jobs until the queue is closed or the slot retired.
func (p *pool) slot() {
	defer p.slots.Done()
	for {
		j, ok := p.queue.pop()
		if !ok || j == nil { // closed, or this slot was retired
			return
		}
		if p.stopping.Load() {
			p.back(j)
			continue
		}
		p.run(j)
		if j.released {
			// Another goroutine took this one's place when j was
			// released: wait to take the place of the next one.
			p.released.Add(-1)
			if !p.spare() {
				return
			}
		}
	}
}

// spare waits until a release needs a slot (true), or ends the goroutine
// (false) when the pool closes or already has as many spares as slots.
func (p *pool) spare() bool {
	p.mu.Lock()
	max := p.size
	p.mu.Unlock()
	if p.spareN.Add(1) > int64(max) {
		p.spareN.Add(-1)
		return false
	}
	defer p.spareN.Add(-1)
	select {
	case <-p.spares:
		return true
	case <-p.quit:
		return false
	}
}

// release is called on the slot that runs j, once j's task returned: a
// spare goroutine, or a new one, takes this slot's place at once, and the
// caller's goroutine goes on with the rest of j, then waits as a spare. So
// a slot runs the next task while the last one's result is being stored:
// the concurrency bounds the tasks running, not the writes waiting for the
// result store, whose pipelines grow accordingly. It returns false, and j
// keeps its slot, when releasedPerSlot jobs per slot are released already
// (the result store is slow: the slots then wait for it, which holds back
// the broker).
func (p *pool) release(j *job) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if j.released || p.released.Load() >= int64(p.size*releasedPerSlot) {
		return false
	}
	p.released.Add(1)
	j.released = true
	select {
	case p.spares <- struct{}{}:
	default:
		p.slots.Add(1)
		go p.slot()
	}
	return true
}

// push queues j; false when the pool is closed.
func (p *pool) push(j *job) bool { return p.queue.push(j) }

// resize grows (n > 0) or shrinks (n < 0) the pool by n slots and returns
// its new size. A started pool starts the new slots at once; a shrinking
// one retires slots as they become free.
func (p *pool) resize(n int) (int, error) {
	p.mu.Lock()
	if p.size+n < 1 {
		p.mu.Unlock()
		return 0, fmt.Errorf("%w: %d slots %+d", ErrPoolSize, p.size, n)
	}
	limit := p.max
	if limit <= 0 {
		limit = config.DefaultMaxConcurrency
	}
	if n > 0 && p.size+n > limit {
		p.mu.Unlock()
		return 0, fmt.Errorf("%w: %d slots %+d would pass %d", ErrPoolLimit, p.size, n, limit)
	}
	p.size += n
	size, started := p.size, p.started
	if started && !p.stopping.Load() && n > 0 {
		p.grow(n)
	}
	p.mu.Unlock()
	if started && n < 0 {
		p.queue.retire(-n)
	}
	return size, nil
}

// concurrency returns the pool size.
func (p *pool) concurrency() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.size
}

// queued returns the jobs waiting for a slot.
func (p *pool) queued() []*job { return p.queue.snapshot() }

// stop makes the slots hand back the jobs they pop from now on, and the
// pool grow no more.
func (p *pool) stop() {
	p.mu.Lock()
	p.stopping.Store(true)
	p.mu.Unlock()
}

// close closes the queue, ends the spares, and returns the jobs that
// never started.
func (p *pool) close() []*job {
	p.mu.Lock()
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	p.mu.Unlock()
	return p.queue.close()
}

// wait waits for the slots to end (after close).
func (p *pool) wait() { p.slots.Wait() }

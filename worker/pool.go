package worker

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/gworker/gworker/config"
)

// pool runs jobs on a bounded number of goroutines, its slots, fed by one
// FIFO queue. It grows and shrinks while it runs; a running job keeps its
// slot until it ends.
type pool struct {
	run  func(j *job) // runs a job in a slot
	back func(j *job) // hands back a job popped after stop

	queue    *jobQueue
	slots    sync.WaitGroup
	stopping atomic.Bool // set under mu

	mu      sync.Mutex
	size    int
	max     int // the largest size; 0: config.DefaultMaxConcurrency
	started bool
}

func newPool(size int, run, back func(j *job)) *pool {
	return &pool{run: run, back: back, queue: newJobQueue(), size: size}
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
	}
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

// close closes the queue and returns the jobs that never started.
func (p *pool) close() []*job { return p.queue.close() }

// wait waits for the slots to end (after close).
func (p *pool) wait() { p.slots.Wait() }

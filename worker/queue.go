package worker

import "sync"

// jobQueue is the FIFO of tasks ready to run. It never blocks a producer:
// its length is bounded by the broker's prefetch window.
type jobQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	items  []*job
	head   int
	closed bool
	// retire is how many waiting pool goroutines should stop (pool shrink).
	retiring int
}

func newJobQueue() *jobQueue {
	q := &jobQueue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// push appends j; it returns false when the queue is closed.
func (q *jobQueue) push(j *job) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, j)
	q.mu.Unlock()
	q.cond.Signal()
	return true
}

// pop waits for the next job; ok is false once the queue is closed, and j
// is nil with ok true when the caller's pool slot is retired.
func (q *jobQueue) pop() (j *job, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head == len(q.items) && !q.closed && q.retiring == 0 {
		q.cond.Wait()
	}
	if q.closed {
		return nil, false
	}
	if q.retiring > 0 {
		q.retiring--
		return nil, true
	}
	j = q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	return j, true
}

// close stops the queue and returns the jobs that never started.
func (q *jobQueue) close() []*job {
	q.mu.Lock()
	rest := append([]*job(nil), q.items[q.head:]...)
	q.items, q.head, q.closed = nil, 0, true
	q.mu.Unlock()
	q.cond.Broadcast()
	return rest
}

// retire makes n pool goroutines stop at their next pop.
func (q *jobQueue) retire(n int) {
	q.mu.Lock()
	q.retiring += n
	q.mu.Unlock()
	q.cond.Broadcast()
}

// snapshot returns the queued jobs.
func (q *jobQueue) snapshot() []*job {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]*job(nil), q.items[q.head:]...)
}

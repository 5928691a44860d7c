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

// pop waits for the next job; ok is false once the queue is closed.
func (q *jobQueue) pop() (j *job, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head == len(q.items) && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return nil, false
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

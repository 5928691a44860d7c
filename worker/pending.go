package worker

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/result"
)

// Backoff between rounds of storing pending results, and the time one
// Store may take.
const (
	pendingRetryMin     = 200 * time.Millisecond
	pendingRetryMax     = 5 * time.Second
	pendingStoreTimeout = 10 * time.Second
	// pendingFinalFlush bounds the last attempt at shutdown.
	pendingFinalFlush = 3 * time.Second
	// pendingLoggedIDs caps the ids named in the shutdown log line.
	pendingLoggedIDs = 1000
)

// pendingResults keeps the final states of early-acknowledged tasks that
// the result store refused, and stores them as soon as it is back: the
// message is gone from the broker, so this copy is the only one. It
// retries with capped exponential backoff for as long as the worker runs,
// keeps at most max results (an overflowing one is given up at once, with
// its id in the log), and names every id still pending at shutdown.
type pendingResults struct {
	backend result.Backend
	log     *zap.Logger
	max     int

	mu    sync.Mutex
	items []*result.Meta
	count int64 // len(items), read by Stats

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

func newPendingResults(backend result.Backend, max int, log *zap.Logger) *pendingResults {
	return &pendingResults{backend: backend, log: log, max: max,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// keep queues m for storing later; false when it was given up instead.
func (p *pendingResults) keep(m *result.Meta) bool {
	p.mu.Lock()
	if len(p.items) >= p.max {
		p.mu.Unlock()
		p.log.Error("result given up: too many results are waiting for the result store",
			zap.String("id", m.TaskID), zap.String("state", string(m.Status)), zap.Int("pending", p.max))
		return false
	}
	p.items = append(p.items, m)
	p.count = int64(len(p.items))
	p.mu.Unlock()
	p.log.Warn("result kept in memory until the result store is back",
		zap.String("id", m.TaskID), zap.String("state", string(m.Status)))
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return true
}

func (p *pendingResults) len() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count
}

// run retries until close is called.
func (p *pendingResults) run() {
	defer close(p.done)
	delay := pendingRetryMin
	for {
		if p.len() == 0 {
			select {
			case <-p.wake:
			case <-p.stop:
				return
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-p.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		ok := p.flush(ctx)
		cancel()
		if ok {
			delay = pendingRetryMin
			continue
		}
		select {
		case <-time.After(delay):
		case <-p.stop:
			return
		}
		delay = min(2*delay, pendingRetryMax)
	}
}

// flush stores the pending results in order; false when the store failed.
func (p *pendingResults) flush(ctx context.Context) bool {
	p.mu.Lock()
	batch := append([]*result.Meta(nil), p.items...)
	p.mu.Unlock()
	for _, m := range batch {
		sctx, cancel := context.WithTimeout(ctx, pendingStoreTimeout)
		err := p.backend.Store(sctx, m)
		cancel()
		if err != nil && !isEncodeError(err) {
			p.log.Debug("pending result still not stored", zap.String("id", m.TaskID), zap.Error(err))
			return false
		}
		if err != nil {
			p.log.Error("result given up: the backend cannot encode it", zap.String("id", m.TaskID), zap.Error(err))
		} else {
			p.log.Info("pending result stored", zap.String("id", m.TaskID), zap.String("state", string(m.Status)))
		}
		p.mu.Lock()
		for i, it := range p.items {
			if it == m {
				p.items = append(p.items[:i], p.items[i+1:]...)
				break
			}
		}
		p.count = int64(len(p.items))
		p.mu.Unlock()
	}
	return true
}

// close stops the retries, makes one last bounded attempt, and logs the
// ids of the results that were never stored.
func (p *pendingResults) close() {
	close(p.stop)
	<-p.done
	if p.len() == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), pendingFinalFlush)
	p.flush(ctx)
	cancel()
	p.mu.Lock()
	ids := make([]string, 0, min(len(p.items), pendingLoggedIDs))
	for _, m := range p.items {
		if len(ids) == pendingLoggedIDs {
			break
		}
		ids = append(ids, m.TaskID)
	}
	n := len(p.items)
	p.items, p.count = nil, 0
	p.mu.Unlock()
	if n > 0 {
		p.log.Error("results given up at shutdown: the result store did not come back",
			zap.Int("count", n), zap.Strings("ids", ids))
	}
}

package redisbackend

import (
	"context"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// storeReq is one Store waiting for the pipeline that carries it.
type storeReq struct {
	id, key string
	status  string
	val     []byte
	err     error
	// done receives false once the write was made (err is then set), or
	// true when this request must lead the next pipeline.
	done chan bool
}

// batcher coalesces concurrent Stores into pipelines (group commit): the
// first caller leads a pipeline holding every request queued meanwhile;
// requests that arrive while it runs wait and form the next pipeline, led
// by the oldest of them. A lone Store is sent at once, so batching adds no
// latency; under load it turns N round trips into one, which saves
// system calls on both sides of the connection.
type batcher struct {
	mu      sync.Mutex
	queue   []*storeReq
	leading bool
}

// reqPool recycles storeReqs with their channels: a Store made one
// struct and one channel per result otherwise.
var reqPool = sync.Pool{New: func() any { return &storeReq{done: make(chan bool, 1)} }}

// newStoreReq returns a request from the pool; release it once its Store
// returned, when nothing can send on its channel any more.
func newStoreReq(id, key, status string, val []byte) *storeReq {
	r := reqPool.Get().(*storeReq)
	r.id, r.key, r.status, r.val = id, key, status, val
	return r
}

func (r *storeReq) release() {
	*r = storeReq{done: r.done}
	reqPool.Put(r)
}

// storeBatched queues r and returns once it is written. Every request
// receives exactly one value on done (its outcome or its turn to lead)
// before storeBatched returns, and none after.
func (b *Backend) storeBatched(ctx context.Context, r *storeReq) error {
	bt := &b.batch
	bt.mu.Lock()
	bt.queue = append(bt.queue, r)
	lead := !bt.leading
	bt.leading = true
	bt.mu.Unlock()
	if !lead && !<-r.done {
		return r.err
	}
	// Lead: write every queued request (r among them), then hand over.
	bt.mu.Lock()
	reqs := bt.queue
	bt.queue = nil
	bt.mu.Unlock()
	// The others' writes must not fail because this caller gave up.
	b.pipelineStore(context.WithoutCancel(ctx), reqs)
	bt.mu.Lock()
	var next *storeReq
	if len(bt.queue) > 0 {
		next = bt.queue[0]
	} else {
		bt.leading = false
	}
	bt.mu.Unlock()
	for _, o := range reqs {
		if o != r {
			o.done <- false
		}
	}
	if next != nil {
		next.done <- true
	}
	return r.err
}

// pipelineStore runs the store script for every request in one pipeline
// and sets each request's error.
func (b *Backend) pipelineStore(ctx context.Context, reqs []*storeReq) {
	ttl := b.ttlSeconds()
	run := func(rs []*storeReq) []*redis.Cmd {
		cmds := make([]*redis.Cmd, len(rs))
		_, _ = b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, r := range rs {
				cmds[i] = storeScript.EvalSha(ctx, p, []string{r.key}, r.val, ttl)
			}
			return nil
		})
		return cmds
	}
	cmds := run(reqs)
	// The script is not cached on the server (first use, restart, SCRIPT
	// FLUSH): those commands did nothing; load it and send them again.
	var again []*storeReq
	for i, c := range cmds {
		if err := c.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			again = append(again, reqs[i])
		}
	}
	if len(again) > 0 {
		if err := storeScript.Load(ctx, b.client).Err(); err != nil {
			for _, r := range again {
				r.err = fmt.Errorf("redisbackend: store %s: load script: %w", r.id, err)
			}
		} else {
			for i, c := range run(again) {
				b.settle(again[i], c)
			}
		}
	}
	for i, c := range cmds {
		if err := c.Err(); err == nil || !redis.HasErrorPrefix(err, "NOSCRIPT") {
			b.settle(reqs[i], c)
		}
	}
}

func (b *Backend) settle(r *storeReq, c *redis.Cmd) {
	n, err := c.Int64()
	if err != nil {
		r.err = fmt.Errorf("redisbackend: store %s: %w", r.id, err)
		return
	}
	if n == 0 {
		b.log.Debug("result not stored: task already succeeded",
			zap.String("task_id", r.id), zap.String("state", r.status))
	}
}

package redisbackend_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
)

// Concurrent Stores share pipelines: every result must still be written
// and published exactly once, and a stored SUCCESS must survive later
// writes sent in the same pipelines.
func TestStoreConcurrent(t *testing.T) {
	bd := setup(t, redisbackend.Options{})
	ctx := testCtx(t)
	const n = 400
	ids := make([]string, n)
	keys := make([]string, n)
	for i := range ids {
		ids[i] = testenv.UUID()
		keys[i] = "celery-task-meta-" + ids[i]
	}
	bd.cleanup(t, keys...)
	ps := bd.client.Subscribe(ctx, keys...)
	defer ps.Close()
	for range keys {
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
	}
	storeAll := func(meta func(i int) *result.Meta) {
		var wg sync.WaitGroup
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; i < n; i += 16 {
					if err := bd.b.Store(ctx, meta(i)); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
	}
	storeAll(func(i int) *result.Meta { return success(ids[i], int64(i)) })
	published := map[string]int{}
	for len(published) < n {
		msg, err := ps.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("after %d messages: %v", len(published), err)
		}
		published[msg.Channel]++
	}
	storeAll(func(i int) *result.Meta { return failure(ids[i], protocol.NewException("ValueError", "late")) })
	for i, id := range ids {
		m, err := bd.b.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if m.Status != result.Success || m.Result != int64(i) {
			t.Fatalf("task %d: %s %v, want SUCCESS %d", i, m.Status, m.Result, i)
		}
	}
	// The FAILURE writes were skipped, so nothing more was published.
	pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if msg, err := ps.ReceiveMessage(pctx); err == nil {
		t.Errorf("unexpected publish on %s", msg.Channel)
	}
	for k, c := range published {
		if c != 1 {
			t.Errorf("%s published %d times", k, c)
		}
	}
}

// When Redis cannot be reached every concurrent Store gets the error; no
// caller is left waiting for a pipeline that failed.
func TestStoreConcurrentErrors(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer c.Close()
	b := redisbackend.New(c, redisbackend.Options{})
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- b.Store(ctx, success(testenv.UUID(), int64(g)))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil {
			t.Fatal("Store succeeded without a server")
		}
		var ee *protocol.EncodeError
		if errors.As(err, &ee) {
			t.Fatalf("unexpected error type: %v", err)
		}
	}
}

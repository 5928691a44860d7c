package redisbackend_test

import (
	"context"
	"testing"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
)

// BenchmarkStore reports the cost of one atomic result write (one round
// trip running the check-and-set script).
func BenchmarkStore(b *testing.B) {
	bd := setup(b, redisbackend.Options{})
	ctx := context.Background()
	var ids []string
	for b.Loop() {
		id := testenv.UUID()
		ids = append(ids, id)
		if err := bd.b.Store(ctx, success(id, int64(4))); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cleanupIDs(bd, ids)
}

// BenchmarkStoreMany100 reports the cost of writing 100 results in one
// pipeline; results/s is the throughput.
func BenchmarkStoreMany100(b *testing.B) {
	bd := setup(b, redisbackend.Options{})
	ctx := context.Background()
	var ids []string
	n := 0
	for b.Loop() {
		metas := make([]*result.Meta, 100)
		for i := range metas {
			id := testenv.UUID()
			ids = append(ids, id)
			metas[i] = success(id, int64(i))
		}
		if err := bd.b.StoreMany(ctx, metas); err != nil {
			b.Fatal(err)
		}
		n += len(metas)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "results/s")
	b.StopTimer()
	cleanupIDs(bd, ids)
}

func cleanupIDs(bd *bundle, ids []string) {
	for len(ids) > 0 {
		n := min(len(ids), 500)
		keys := make([]string, n)
		for i, id := range ids[:n] {
			keys[i] = bd.b.TaskKey(id)
		}
		bd.client.Del(context.Background(), keys...)
		ids = ids[n:]
	}
}

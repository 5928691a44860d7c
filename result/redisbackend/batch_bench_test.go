package redisbackend_test

import (
	"context"
	"sync"
	"testing"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/result/redisbackend"
)

// BenchmarkStoreConcurrent16 is what a worker at -c 16 does: 16 goroutines
// storing results at once; ns/op is per result. Compare the default
// (concurrent Stores coalesced into pipelines) with NoBatching.
func BenchmarkStoreConcurrent16(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts redisbackend.Options
	}{
		{"batched", redisbackend.Options{}},
		{"unbatched", redisbackend.Options{NoBatching: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bd := setup(b, bc.opts)
			ctx := context.Background()
			var mu sync.Mutex
			var ids []string
			b.ReportAllocs()
			b.SetParallelism(8) // 16 goroutines on 2 CPUs
			b.RunParallel(func(pb *testing.PB) {
				var mine []string
				for pb.Next() {
					id := testenv.UUID()
					mine = append(mine, id)
					if err := bd.b.Store(ctx, success(id, int64(4))); err != nil {
						b.Error(err)
						return
					}
				}
				mu.Lock()
				ids = append(ids, mine...)
				mu.Unlock()
			})
			b.StopTimer()
			cleanupIDs(bd, ids)
		})
	}
}

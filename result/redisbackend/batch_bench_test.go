package redisbackend_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/result/redisbackend"
)

// BenchmarkStoreConcurrent16 is what a worker at -c 16 does: 16 goroutines
// storing results at once, through a backend made by Open as the worker's
// is; ns/op is per result. Compare the default (concurrent Stores
// coalesced into pipelines, RESP2) with NoBatching, and with RESP3.
func BenchmarkStoreConcurrent16(b *testing.B) {
	for _, bc := range []struct {
		name  string
		query string
		opts  redisbackend.Options
	}{
		{"batched", "", redisbackend.Options{}},
		{"unbatched", "", redisbackend.Options{NoBatching: true}},
		{"batched-resp3", "protocol=3", redisbackend.Options{}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bd := openBundle(b, bc.query, bc.opts)
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

// openBundle is setup with a backend made by Open from the test URL plus
// query.
func openBundle(b *testing.B, query string, opts redisbackend.Options) *bundle {
	u := testenv.RedisURL()
	if query != "" {
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		u += sep + query
	}
	be, err := redisbackend.Open(u, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.Close() })
	return &bundle{client: testenv.Redis(b), b: be}
}

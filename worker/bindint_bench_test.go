package worker_test

import (
	"context"
	"testing"

	"github.com/gworker/gworker/worker"
)

// BenchmarkBindInt is the argument binding of a typed task, func(ctx, x, y
// int), called with decoded Python ints.
func BenchmarkBindInt(b *testing.B) {
	reg := worker.NewRegistry()
	reg.MustRegister("tasks.addint", func(ctx context.Context, x, y int) (int, error) { return x + y, nil }, worker.Params("x", "y"))
	task, err := reg.Lookup("tasks.addint")
	if err != nil {
		b.Fatal(err)
	}
	args := []any{int64(2), int64(2)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := task.Handler(ctx, args, nil); err != nil {
			b.Fatal(err)
		}
	}
}

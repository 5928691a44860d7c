package gworkertest_test

import (
	"context"
	"testing"

	"github.com/gworker/gworker/gworkertest"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// BenchmarkEnvRoundTrip is one task sent, run by the worker at -c 4 and
// its result waited for, all in memory: what a test pays per task.
func BenchmarkEnvRoundTrip(b *testing.B) {
	ctx := context.Background()
	e := gworkertest.NewEnv(b, gworkertest.Config{})
	e.Registry.MustRegister("t.add", func(x, y int) int { return x + y }, worker.Params("x", "y"))
	if err := e.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		r, err := e.SendTask(ctx, "t.add", []any{2, 2}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if m, err := e.Wait(ctx, r.ID()); err != nil || m.Status != result.Success {
			b.Fatal(m, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
}

// BenchmarkRunTask is one RunTask call.
func BenchmarkRunTask(b *testing.B) {
	ctx := context.Background()
	reg := worker.NewRegistry()
	reg.MustRegister("t.add", func(x, y int) int { return x + y }, worker.Params("x", "y"))
	b.ReportAllocs()
	for b.Loop() {
		if run, err := gworkertest.RunTask(ctx, reg, "t.add", []any{2, 2}, nil); err != nil || run.Value != int64(4) {
			b.Fatal(run, err)
		}
	}
}

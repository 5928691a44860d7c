package rabbitmq_test

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/demo"
	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
	"github.com/gworker/gworker/worker"
)

// countingBackend counts stored SUCCESS results on top of a real backend.
type countingBackend struct {
	result.Backend
	done *sync.WaitGroup
}

func (c countingBackend) Store(ctx context.Context, m *result.Meta) error {
	err := c.Backend.Store(ctx, m)
	if m.Status == result.Success {
		c.done.Done()
	}
	return err
}

// BenchmarkWorkerRabbitRedis drains a prefilled queue of tasks.add
// messages with a worker at -c 16 on the real RabbitMQ and Redis, results
// stored; ns/op is wall time per task. Publishing is outside the timer.
// It is the in-repo counterpart of cmd/gworker-bench's prefill mode, and
// the one to profile (-cpuprofile) since worker and broker client share
// the process.
func BenchmarkWorkerRabbitRedis(b *testing.B) {
	ctx := context.Background()
	br, err := amqptransport.Dial(ctx, amqptransport.Config{URL: testenv.AMQPURL(), ConnectionName: "gworker-worker-bench"})
	if err != nil {
		b.Fatalf("RabbitMQ must run at %s: %v", testenv.AMQPURL(), err)
	}
	defer br.Close()
	rb, err := redisbackend.Open(testenv.RedisURL(), redisbackend.Options{Expires: 10 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer rb.Close()
	if err := rb.Client().Ping(ctx).Err(); err != nil {
		b.Fatalf("Redis must run at %s: %v", testenv.RedisURL(), err)
	}
	queue := "gw-worker-bench-" + testenv.Suffix()
	if err := br.Declare(ctx, amqptransport.TaskQueue(queue)); err != nil {
		b.Fatal(err)
	}
	defer br.DeleteQueue(context.Background(), queue)

	// Prefill b.N messages, 32 publishers at a time.
	p := producer.New(nil, producer.Options{})
	ids := make([]string, 0, b.N)
	raws := make([]*protocol.RawMessage, 0, b.N)
	for i := 0; i < b.N; i++ {
		m, err := p.Build("tasks.add", []any{int64(i), int64(i)}, nil, producer.Queue(queue))
		if err != nil {
			b.Fatal(err)
		}
		raw, err := p.Encode(m)
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, m.ID)
		raws = append(raws, raw)
	}
	defer func() {
		for lo := 0; lo < len(ids); lo += 500 {
			keys := make([]string, 0, 500)
			for _, id := range ids[lo:min(lo+500, len(ids))] {
				keys = append(keys, rb.TaskKey(id))
			}
			rb.Client().Del(context.Background(), keys...)
		}
	}()
	work := make(chan *protocol.RawMessage)
	var pubWG sync.WaitGroup
	errc := make(chan error, 32)
	for i := 0; i < 32; i++ {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			for raw := range work {
				if err := br.Publish(ctx, "", queue, raw); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	for _, raw := range raws {
		work <- raw
	}
	close(work)
	pubWG.Wait()
	select {
	case err := <-errc:
		b.Fatal(err)
	default:
	}

	reg := worker.NewRegistry()
	if err := demo.Register(reg); err != nil {
		b.Fatal(err)
	}
	var done sync.WaitGroup
	done.Add(b.N)
	w, err := worker.New(worker.Config{
		Registry: reg, Broker: br, Backend: countingBackend{rb, &done},
		Queues: []string{queue}, DisableFollowups: true, Concurrency: 16, Hostname: "celery@bench",
	})
	if err != nil {
		b.Fatal(err)
	}
	// GWORKER_DRAIN_CPUPROFILE=FILE profiles the drain alone (go test's
	// -cpuprofile would include the publishing).
	if path := os.Getenv("GWORKER_DRAIN_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	// GWORKER_DRAIN_MEMPROFILE=FILE writes the allocation profiles taken
	// before (FILE.base) and after the drain (run with -memprofilerate 1
	// to see every allocation); compare them with
	// go tool pprof -sample_index=alloc_objects -base FILE.base FILE.
	memPath := os.Getenv("GWORKER_DRAIN_MEMPROFILE")
	if memPath != "" {
		writeAllocs(b, memPath+".base")
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	wctx, cancel := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(wctx) }()
	done.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
	if cpu := cpuTime() - cpu0; cpu > 0 {
		// The process's CPU, the worker's and the Go runtime's, per task.
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/task")
	}
	pprof.StopCPUProfile()
	if memPath != "" {
		writeAllocs(b, memPath)
	}
	cancel()
	if err := <-runErr; err != nil {
		b.Fatal(err)
	}
}

// writeAllocs writes the allocation profile so far to path.
func writeAllocs(b *testing.B, path string) {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

package worker_test

import (
	"context"
	"io"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gworker/gworker/demo"
	"github.com/gworker/gworker/events"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// addMessage is tasks.add(2, 2) as Celery sends it.
func addMessage(b *testing.B) *protocol.RawMessage {
	b.Helper()
	p := producer.New(nil, producer.Options{})
	m, err := p.Build("tasks.add", []any{int64(2), int64(2)}, nil, producer.Queue("celery"))
	if err != nil {
		b.Fatal(err)
	}
	raw, err := p.Encode(m)
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// BenchmarkBindAdd is the argument binding of tasks.add: the registered
// plain Go function called through its Handler with decoded arguments.
func BenchmarkBindAdd(b *testing.B) {
	reg := worker.NewRegistry()
	if err := demo.Register(reg); err != nil {
		b.Fatal(err)
	}
	task, err := reg.Lookup("tasks.add")
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

// encodingBackend encodes every meta as a real backend would, then drops
// it: the in-process cost of storing without the network.
// done is told about every stored meta.
type encodingBackend struct{ done *sync.WaitGroup }

func (e encodingBackend) Store(_ context.Context, m *result.Meta) error {
	_, err := result.EncodeMeta(m)
	e.done.Done()
	return err
}
func (encodingBackend) Get(context.Context, string) (*result.Meta, error) { return nil, nil }
func (encodingBackend) Forget(context.Context, string) error              { return nil }

// memBroker hands the worker deliveries from a Go channel.
type memBroker struct{ ch chan worker.Delivery }

func (m *memBroker) Consume(context.Context, []string, int) (worker.Consumer, error) {
	return memConsumer{m.ch}, nil
}

type memConsumer struct{ ch chan worker.Delivery }

func (c memConsumer) Deliveries() <-chan worker.Delivery { return c.ch }
func (memConsumer) SetPrefetch(int) error                { return nil }
func (c memConsumer) Cancel(context.Context) error       { return nil }
func (memConsumer) Close() error                         { return nil }

type memDelivery struct{ raw *protocol.RawMessage }

func (d memDelivery) Raw() *protocol.RawMessage { return d.raw }
func (memDelivery) Ack() error                  { return nil }
func (memDelivery) Reject(bool) error           { return nil }

// BenchmarkWorkerHandle is the whole in-process handling of one tasks.add
// message by a running worker (-c 16): decode, dispatch, bind, run, build
// and encode the SUCCESS meta, acknowledge. Only the network is left out.
// The worker logs to a console logger (discarded) at WARNING, as
// benchmarked, and at INFO, where it writes Celery's received/succeeded
// lines for every task.
func BenchmarkWorkerHandle(b *testing.B) {
	for _, lvl := range []zapcore.Level{zapcore.WarnLevel, zapcore.InfoLevel} {
		b.Run(lvl.CapitalString(), func(b *testing.B) {
			enc := zapcore.NewConsoleEncoder(zap.NewProductionEncoderConfig())
			benchHandle(b, zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), lvl)), nil)
		})
	}
	// With one middleware that only calls next: the cost of the seam
	// once something is installed (none is added without).
	b.Run("WARNING-middleware", func(b *testing.B) {
		pass := func(next worker.RunFunc) worker.RunFunc { return next }
		benchHandle(b, zap.NewNop(), nil, func(next worker.RunFunc) worker.RunFunc {
			return func(ctx context.Context, req *worker.Request) error { return next(ctx, req) }
		}, pass)
	})
	// With task events on (-E): three events per task built, queued and
	// batched by the dispatcher; only the publish is left out.
	b.Run("WARNING-events", func(b *testing.B) {
		d, err := events.New(events.Config{Publisher: discardPublisher{}, Hostname: "celery@bench", HeartbeatInterval: -1, TaskEvents: true})
		if err != nil {
			b.Fatal(err)
		}
		if err := d.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		defer d.Stop(context.Background())
		benchHandle(b, zap.NewNop(), d)
		b.ReportMetric(float64(d.Dropped()), "dropped")
	})
}

type discardPublisher struct{}

func (discardPublisher) Publish(context.Context, string, string, *protocol.RawMessage) error {
	return nil
}

func benchHandle(b *testing.B, log *zap.Logger, sink worker.EventSink, mw ...worker.Middleware) {
	reg := worker.NewRegistry()
	if err := demo.Register(reg); err != nil {
		b.Fatal(err)
	}
	br := &memBroker{ch: make(chan worker.Delivery, 64)}
	var wg sync.WaitGroup
	w, err := worker.New(worker.Config{Registry: reg, Broker: br, Backend: encodingBackend{&wg}, DisableFollowups: true, Concurrency: 16, Hostname: "celery@bench", Logger: log, Events: sink, Middleware: mw})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	raw := addMessage(b)
	b.ReportAllocs()
	for b.Loop() {
		wg.Add(1)
		br.ch <- memDelivery{raw}
	}
	wg.Wait()
	b.StopTimer()
	cancel()
	close(br.ch)
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if st := w.Stats(); st.Succeeded != st.Received {
		b.Fatalf("stats %+v", st)
	}
}

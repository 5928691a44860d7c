package gworker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gworker/gworker"
	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/transport"
)

// stallingBroker's consumers hold Cancel, the first step of a warm
// shutdown, until release is closed (or Cancel's context ends): the warm
// shutdown of an idle worker then lasts as long as the test wants.
type stallingBroker struct {
	transport.Broker
	s *stall
}

type stall struct {
	once     sync.Once
	entered  chan struct{}
	release  chan struct{}
	released sync.Once
}

func (s *stall) open() { s.released.Do(func() { close(s.release) }) }

func (b *stallingBroker) Consume(ctx context.Context, queues []string, prefetch int) (transport.Consumer, error) {
	c, err := b.Broker.Consume(ctx, queues, prefetch)
	if err != nil {
		return nil, err
	}
	return &stallingConsumer{Consumer: c, s: b.s}, nil
}

type stallingConsumer struct {
	transport.Consumer
	s *stall
}

func (c *stallingConsumer) Cancel(ctx context.Context) error {
	c.s.once.Do(func() { close(c.s.entered) })
	select {
	case <-c.s.release:
	case <-ctx.Done():
	}
	return c.Consumer.Cancel(ctx)
}

// A cold shutdown of an idle worker (no task running) skips the soft
// shutdown, as Celery 5.5: the worker is cancelled at once, without
// waiting for its warm shutdown to end. With EnableSoftShutdownOnIdle
// (worker_enable_soft_shutdown_on_idle) it waits for it, up to
// SoftShutdownTimeout.
func TestSoftShutdownOnIdle(t *testing.T) {
	for _, onIdle := range []bool{false, true} {
		t.Run(map[bool]string{false: "skipped", true: "on idle"}[onIdle], func(t *testing.T) {
			s := &stall{entered: make(chan struct{}), release: make(chan struct{})}
			defer s.open()
			reg := transport.NewRegistry()
			reg.Register(func(ctx context.Context, url string, o transport.Options) (transport.Broker, error) {
				b, err := amqptransport.Open(ctx, url, o)
				if err != nil {
					return nil, err
				}
				return &stallingBroker{Broker: b, s: s}, nil
			}, amqptransport.Schemes...)
			cfg := gworker.Config{Concurrency: 1, SoftShutdownTimeout: time.Hour, EnableSoftShutdownOnIdle: onIdle}
			app, _ := newTestApp(t, cfg, gworker.WithTransports(reg))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := app.Start(ctx); err != nil {
				t.Fatal(err)
			}
			stopped := make(chan error, 1)
			go func() { stopped <- app.Stop(context.Background()) }()
			select {
			case <-s.entered:
			case <-ctx.Done():
				t.Fatal("the warm shutdown did not start")
			}
			cold := make(chan struct{})
			go func() { app.ColdShutdown(); close(cold) }()
			if !onIdle {
				// Cancelled at once: ColdShutdown returns while the warm
				// shutdown still waits for the broker.
				select {
				case <-cold:
				case <-ctx.Done():
					t.Fatal("ColdShutdown of an idle worker waited")
				}
				select {
				case <-app.Stopped():
					t.Fatal("the worker stopped before the warm shutdown could end")
				default:
				}
				s.open()
			} else {
				// The soft shutdown: ColdShutdown waits for the warm
				// shutdown, which ends once the broker answers.
				select {
				case <-cold:
					t.Fatal("ColdShutdown of an idle worker returned before its warm shutdown ended")
				case <-time.After(300 * time.Millisecond):
				}
				s.open()
				select {
				case <-cold:
				case <-ctx.Done():
					t.Fatal("ColdShutdown did not return after the warm shutdown")
				}
				select {
				case <-app.Stopped():
				default:
					t.Fatal("ColdShutdown returned before the worker stopped")
				}
			}
			if err := <-stopped; err != nil {
				t.Errorf("Stop: %v", err)
			}
		})
	}
}

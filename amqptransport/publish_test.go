package amqptransport

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
)

func TestPublishPropertiesAndHeadersRoundTrip(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{q}, Prefetch: 1, GlobalQoS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := &protocol.RawMessage{
		Headers: map[string]any{
			"task": "tasks.add", "retries": 0, "timelimit": []any{nil, 2.5},
			"big": int64(1) << 40, "neg": -7, "nested": map[string]any{"k": []any{"v", true}},
		},
		ContentType: protocol.ContentTypeJSON, ContentEncoding: "utf-8",
		Body: []byte(`[[2, 2], {}, {}]`), CorrelationID: "cid", ReplyTo: "rq", AppID: "app-1",
		DeliveryMode: 2, Priority: 3, HasPriority: true, Expiration: "60000",
	}
	if err := f.b.Publish(ctx, "", q.Name, msg); err != nil {
		t.Fatal(err)
	}
	d := recv(t, c, 10*time.Second)
	defer d.Ack()
	r := d.Raw()
	if r.ContentType != msg.ContentType || r.ContentEncoding != "utf-8" || string(r.Body) != string(msg.Body) ||
		r.CorrelationID != "cid" || r.ReplyTo != "rq" || r.DeliveryMode != 2 || r.Priority != 3 ||
		!r.HasPriority || r.Expiration != "60000" || r.AppID != "app-1" {
		t.Fatalf("properties: %+v", r)
	}
	h := r.Headers
	if h["task"] != "tasks.add" || h["retries"] != int64(0) || h["big"] != int64(1)<<40 || h["neg"] != int64(-7) {
		t.Fatalf("headers: %#v", h)
	}
	if tl := h["timelimit"].([]any); tl[0] != nil || tl[1] != 2.5 {
		t.Fatalf("timelimit: %#v", tl)
	}
	if n := h["nested"].(map[string]any)["k"].([]any); n[0] != "v" || n[1] != true {
		t.Fatalf("nested: %#v", n)
	}
}

func TestPublishMandatoryUnroutable(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msg := &protocol.RawMessage{ContentType: "application/json", Body: []byte("{}")}
	nowhere := uniqueName(t, "nowhere")
	err := f.b.PublishWithOptions(ctx, "", nowhere, msg, &PublishOptions{Mandatory: true})
	var re *ReturnError
	if !errors.As(err, &re) || !errors.Is(err, ErrReturned) || re.Code != amqp.NoRoute || re.RoutingKey != nowhere {
		t.Fatalf("err = %v, want a NO_ROUTE ReturnError", err)
	}
	// Without mandatory RabbitMQ confirms and drops it.
	if err := f.b.Publish(ctx, "", nowhere, msg); err != nil {
		t.Fatalf("non-mandatory: %v", err)
	}
	// Routable mandatory messages among unroutable ones are told apart.
	q := f.queue()
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := q.Name
			if i%2 == 1 {
				key = nowhere
			}
			m := &protocol.RawMessage{ContentType: "application/json", Body: []byte(fmt.Sprint(i))}
			errs[i] = f.b.PublishWithOptions(ctx, "", key, m, &PublishOptions{Mandatory: true})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if i%2 == 0 && err != nil {
			t.Errorf("routable %d: %v", i, err)
		}
		if i%2 == 1 && !errors.Is(err, ErrReturned) {
			t.Errorf("unroutable %d: %v", i, err)
		}
	}
	eventually(t, 10*time.Second, "20 routed", func() bool { return f.ready(q.Name) == 20 })
}

func TestPublishUnknownExchange(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msg := &protocol.RawMessage{ContentType: "application/json", Body: []byte("{}")}
	err := f.b.Publish(ctx, uniqueName(t, "noexchange"), "k", msg)
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.NotFound {
		t.Fatalf("err = %v, want NOT_FOUND", err)
	}
	// The publisher recovers for the next message.
	q := f.queue()
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatal(err)
	}
	if err := f.b.Publish(ctx, "", q.Name, msg); err != nil {
		t.Fatal(err)
	}
}

func TestPublishInvalid(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bad := &protocol.RawMessage{Headers: map[string]any{"f": func() {}}}
	if err := f.b.Publish(ctx, "", "x", bad); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("err = %v", err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if err := f.b.Publish(cctx, "", "x", &protocol.RawMessage{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: %v", err)
	}
}

func TestPublishSurvivesConnectionLoss(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatal(err)
	}
	// Publish continuously from 4 goroutines while both connections are
	// force-closed, and keep going a while after.
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		confirmed = map[int64]bool{}
		next      int64
		stop      = make(chan struct{})
		started   = make(chan struct{})
		once      sync.Once
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i == 50 {
					once.Do(func() { close(started) })
				}
				m := &protocol.RawMessage{Headers: map[string]any{"n": i}, ContentType: "application/json",
					Body: []byte("{}"), DeliveryMode: 2}
				if err := f.b.Publish(ctx, "", q.Name, m); err != nil {
					t.Errorf("publish %d: %v", i, err)
					return
				}
				mu.Lock()
				confirmed[i] = true
				mu.Unlock()
			}
		}()
	}
	<-started
	f.killConnections(true)
	mu.Lock()
	after := next + 200
	mu.Unlock()
	eventually(t, 60*time.Second, "200 more publishes after the reconnect", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return next >= after
	})
	close(stop)
	wg.Wait()
	// Every confirmed message is in the queue (at least once).
	c, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{q}, Prefetch: 200, GlobalQoS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seen := map[int64]bool{}
	for len(seen) < len(confirmed) {
		d := recv(t, c, 10*time.Second)
		seen[headerInt(t, d, "n")] = true
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range confirmed {
		if !seen[i] {
			t.Errorf("confirmed message %d lost", i)
		}
	}
	t.Logf("%d confirmed publishes across the connection loss", len(confirmed))
}

func TestPublishConcurrentThroughput(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatal(err)
	}
	const n, workers = 2000, 32
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	begin := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				m := &protocol.RawMessage{Headers: map[string]any{"n": i}, ContentType: "application/json",
					Body: []byte("[[1, 2], {}, {}]"), DeliveryMode: 2}
				if err := f.b.Publish(ctx, "", q.Name, m); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	el := time.Since(begin)
	t.Logf("%d confirmed persistent publishes from %d goroutines in %v (%.0f/s)", n, workers, el, float64(n)/el.Seconds())
	eventually(t, 10*time.Second, "all routed", func() bool { return f.ready(q.Name) == n })
}

func BenchmarkPublishConfirmed(b *testing.B) {
	requireBroker(b)
	ctx := context.Background()
	br, err := Dial(ctx, Config{URL: testenv.AMQPURL(), ConnectionName: "gwtest.bench." + testenv.Suffix()})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	q := Queue{Name: "gwtest.bench." + testenv.Suffix(), AutoDelete: false}
	if err := br.Declare(ctx, q); err != nil {
		b.Fatal(err)
	}
	defer br.DeleteQueue(ctx, q.Name)
	m := &protocol.RawMessage{Headers: map[string]any{"task": "tasks.add"}, ContentType: "application/json",
		Body: []byte("[[1, 2], {}, {}]"), DeliveryMode: 2}
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := br.Publish(ctx, "", q.Name, m); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/math.Max(time.Since(start).Seconds(), 1e-9), "msgs/s")
}

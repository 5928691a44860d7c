package redistransport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
)

// bigTask is a task message whose body is size bytes.
func bigTask(id string, size int) *protocol.RawMessage {
	m := task(id, 0)
	m.Body = bytes.Repeat([]byte{'x'}, size)
	return m
}

// A fetch takes at most FetchBatchBytes (and always one message): the
// script runs while Redis serves no one else, so a batch of large messages
// must not be taken in one call.
func TestFetchIsBoundedByBytes(t *testing.T) {
	b := newTestBroker(t, nil)
	ctx := ctxT(t)
	const size = 700 << 10
	for i := range 3 {
		if err := b.Publish(ctx, "", "big", bigTask(fmt.Sprint(i), size)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := b.newConsumer(ConsumerConfig{Queues: []string{"big"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for total := 0; total < 3; {
		ds, err := c.fetch(ctx, 32)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 0 {
			t.Fatalf("fetch returned nothing after %d messages", total)
		}
		got = append(got, len(ds))
		total += len(ds)
		for _, d := range ds {
			if err := d.Ack(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// 700 KiB each: the second message passes 1 MiB, so 2 then 1.
	if fmt.Sprint(got) != "[2 1]" {
		t.Errorf("messages per fetch %v, want [2 1]", got)
	}
}

// The fetch records each message as [item, "", queue] under a tag of its
// own, so that kombu's restore (and ours) returns it to the queue it came
// from; two copies of a message with the same delivery_tag are two entries.
func TestFetchRecordsUnackedEntriesUnderOwnTags(t *testing.T) {
	b := newTestBroker(t, nil)
	ctx := ctxT(t)
	m := task("dup", 0)
	for range 2 {
		if err := b.Publish(ctx, "", "q1", m); err != nil {
			t.Fatal(err)
		}
	}
	c, err := b.newConsumer(ConsumerConfig{Queues: []string{"q1"}})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := c.fetch(ctx, 2)
	if err != nil || len(ds) != 2 {
		t.Fatalf("fetch: %d, %v", len(ds), err)
	}
	if ds[0].Tag == ds[1].Tag {
		t.Fatalf("both copies recorded under %s", ds[0].Tag)
	}
	rc := testenv.Redis(t)
	for _, d := range ds {
		entry, err := rc.HGet(ctx, b.key("unacked"), d.Tag).Result()
		if err != nil {
			t.Fatal(err)
		}
		item, ex, rk, err := parseUnackedEntry([]byte(entry))
		if err != nil || ex != "" || rk != "q1" || !strings.HasPrefix(string(item), "{") {
			t.Errorf("entry %q: exchange %q, routing key %q, %v", entry[:40], ex, rk, err)
		}
	}
	// A lost reply: restoreLost puts both back at the head of q1.
	c.restoreLost([]string{ds[0].Tag, ds[1].Tag})
	if n, _ := b.QueueLength(ctx, "q1"); n != 2 {
		t.Errorf("q1 holds %d after the restore, want 2", n)
	}
	if n, _ := rc.HLen(ctx, b.key("unacked")).Result(); n != 0 {
		t.Errorf("%d unacked entries left", n)
	}
}

// BenchmarkFetchLargeMessages takes 32 messages of 4 MiB while another
// client PINGs Redis, and reports the longest PING (the stall the fetch
// imposes on every other client of the server).
func BenchmarkFetchLargeMessages(bm *testing.B) {
	b := newTestBroker(bm, nil)
	ctx := context.Background()
	msg := bigTask("big", 4<<20)
	rc := testenv.Redis(bm)
	var worst time.Duration
	for range bm.N {
		for range 32 {
			if err := b.Publish(ctx, "", "huge", msg); err != nil {
				bm.Fatal(err)
			}
		}
		c, err := b.NewConsumer(ctx, ConsumerConfig{Queues: []string{"huge"}, Prefetch: 32})
		if err != nil {
			bm.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				t0 := time.Now()
				_ = rc.Ping(ctx).Err()
				if d := time.Since(t0); d > worst {
					worst = d
				}
			}
		}()
		for range 32 {
			d := <-c.Deliveries()
			_ = d.Ack()
		}
		close(stop)
		wg.Wait()
		_ = c.Close()
	}
	bm.ReportMetric(float64(worst.Milliseconds()), "max-stall-ms")
}

// A pidbox message whose reply_to names the events exchange must not turn
// it into a direct exchange: the redeclaration is refused (kombu raises
// NotEquivalentError) and events keep going out over pub/sub. The number
// of exchanges remembered is bounded.
func TestExchangeKindIsKept(t *testing.T) {
	b := newTestBroker(t, nil)
	ctx := ctxT(t)
	if err := b.DeclareExchange(ctx, "celeryev", "topic", true); err != nil {
		t.Fatal(err)
	}
	if err := b.DeclareExchange(ctx, "celeryev", "direct", false); !errors.Is(err, ErrNotEquivalent) {
		t.Fatalf("redeclared as direct: %v", err)
	}
	if err := b.DeclareExchange(ctx, "celeryev", "topic", true); err != nil {
		t.Fatalf("same kind again: %v", err)
	}
	sub, err := b.SubscribeFanout(ctx, "celeryev", "#")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := b.Publish(ctx, "celeryev", "worker.heartbeat", task("ev", 0)); err != nil {
		t.Fatalf("publish to the events exchange: %v", err)
	}
	select {
	case m := <-sub.Messages():
		if m.Headers["id"] != "ev" {
			t.Errorf("got %v", m.Headers)
		}
	case <-ctx.Done():
		t.Fatal("the event did not go out over pub/sub")
	}
	for i := 0; i < MaxExchanges; i++ {
		_ = b.DeclareExchange(ctx, fmt.Sprintf("x%d", i), "direct", false)
	}
	if err := b.DeclareExchange(ctx, "one-too-many", "direct", false); err == nil {
		t.Error("more than MaxExchanges exchanges accepted")
	}
}

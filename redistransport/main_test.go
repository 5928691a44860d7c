package redistransport

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newTestBroker dials the test Redis with a key prefix unique to the test
// and deletes every key under it when the test ends.
func newTestBroker(t testing.TB, mutate func(*Config)) *Broker {
	t.Helper()
	cfg := Config{
		URL:             testenv.RedisURL(),
		Logger:          zaptest.NewLogger(t),
		GlobalKeyPrefix: "gwt-" + testenv.Suffix() + ":",
	}
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	prefix := b.cfg.GlobalKeyPrefix
	rc := testenv.Redis(t)
	t.Cleanup(func() {
		_ = b.Close()
		keys, _ := rc.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			rc.Del(context.Background(), keys...)
		}
	})
	return b
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// task returns a small task message with id as its body.
func task(id string, priority uint8) *protocol.RawMessage {
	return &protocol.RawMessage{
		Headers:         map[string]any{"id": id, "task": "tasks.add", "lang": "py", "retries": int64(0)},
		ContentType:     "application/json",
		ContentEncoding: "utf-8",
		Body:            []byte(`[[1, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`),
		CorrelationID:   id,
		ReplyTo:         "reply-" + id,
		DeliveryMode:    2,
		Priority:        priority,
		HasPriority:     true,
	}
}

// recv waits for the next delivery.
func recv(t *testing.T, c *Consumer) *Delivery {
	t.Helper()
	select {
	case d, ok := <-c.Deliveries():
		if !ok {
			t.Fatal("Deliveries closed")
		}
		return d.(*Delivery)
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery within 30s")
	}
	return nil
}

// noDelivery checks that nothing is delivered for a short while (the
// consumer polls every PollTimeout, so a message would arrive quickly).
func noDelivery(t *testing.T, c *Consumer, wait time.Duration) {
	t.Helper()
	select {
	case d := <-c.Deliveries():
		t.Fatalf("unexpected delivery %v", d.Raw().Headers["id"])
	case <-time.After(wait):
	}
}

package amqptransport

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/gworker/gworker/amqptransport/internal/rawamqp"
	"github.com/gworker/gworker/protocol"
)

func TestRawClientAgainstBroker(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatal(err)
	}
	rc, err := rawamqp.Dial(ctx, f.b.eps[0].uri, f.name+" raw", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("x"), 300_000) // spans several body frames
	m := &protocol.RawMessage{ContentType: "application/json", DeliveryMode: 2, Body: body, HasPriority: true, Priority: 4}
	if err := rc.Publish("", q.Name, m, protocol.Dict{{Key: "big", Value: int64(1) << 40}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "published", func() bool { return f.ready(q.Name) == 1 })
	got, ok, err := rc.Get(q.Name)
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	if !bytes.Equal(got.Raw.Body, body) || got.Raw.Headers["big"] != int64(1)<<40 || got.ForeignTags != "L" || got.Raw.Priority != 4 {
		t.Fatalf("got %+v foreign=%q", got.Raw.Headers, got.ForeignTags)
	}
	// Not acked: closing the channel returns it.
	if err := rc.CloseChannel(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "returned", func() bool { return f.ready(q.Name) == 1 })
	got, ok, err = rc.Get(q.Name)
	if err != nil || !ok || !got.Redelivered {
		t.Fatalf("second get: %v %v %+v", ok, err, got)
	}
	if err := rc.Ack(got.Tag); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := rc.Get(q.Name); ok || err != nil {
		t.Fatalf("queue not empty after ack: %v %v", ok, err)
	}
	// A broker channel error is reported and the connection stays usable.
	_, _, err = rc.Get(uniqueName(t, "missing"))
	if err == nil {
		t.Fatal("get on a missing queue succeeded")
	}
	if _, ok, err := rc.Get(q.Name); ok || err != nil {
		t.Fatalf("get after a channel error: %v %v", ok, err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
}

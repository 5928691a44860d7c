package producer_test

import (
	"context"
	"errors"
	"maps"
	"testing"

	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
)

// addHeader is a middleware that adds a header to a copy of the message,
// as the Middleware doc asks.
func addHeader(key, value string, calls *[]string) producer.Middleware {
	return func(next producer.PublishFunc) producer.PublishFunc {
		return func(ctx context.Context, msg producer.Message) error {
			*calls = append(*calls, key+" "+msg.Task)
			m := *msg.Message
			m.Headers = maps.Clone(msg.Headers)
			if m.Headers == nil {
				m.Headers = map[string]any{}
			}
			m.Headers[key] = value
			msg.Message = &m
			return next(ctx, msg)
		}
	}
}

func TestMiddlewareWrapsEveryPublish(t *testing.T) {
	rec := &recorder{}
	var calls []string
	refuse := func(next producer.PublishFunc) producer.PublishFunc {
		return func(ctx context.Context, msg producer.Message) error {
			if msg.Task == "tasks.refused" {
				return errors.New("refused")
			}
			return next(ctx, msg)
		}
	}
	p := producer.New(rec, producer.Options{Middleware: []producer.Middleware{
		addHeader("outer", "1", &calls), addHeader("inner", "2", &calls), refuse}})
	ctx := context.Background()

	if _, err := p.SendTask(ctx, "tasks.add", []any{1, 2}, nil, producer.Headers(map[string]any{"mine": "x"})); err != nil {
		t.Fatal(err)
	}
	built, err := p.Build("tasks.mul", []any{2, 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.PublishMessage(ctx, built); err != nil {
		t.Fatal(err)
	}
	delivered := &protocol.Message{ID: "id-1", Task: "tasks.retry", Headers: map[string]any{"traceparent": "old"}}
	if err := p.Publish(ctx, delivered, producer.Route{RoutingKey: "q"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.SendTask(ctx, "tasks.refused", nil, nil); err == nil {
		t.Error("a middleware's error was not returned")
	}

	if len(rec.msgs) != 3 {
		t.Fatalf("published %d messages, want 3", len(rec.msgs))
	}
	for i, m := range rec.msgs {
		if m.msg.Headers["outer"] != "1" || m.msg.Headers["inner"] != "2" {
			t.Errorf("message %d headers %v", i, m.msg.Headers)
		}
	}
	if rec.msgs[0].msg.Headers["mine"] != "x" || rec.msgs[2].msg.Headers["traceparent"] != "old" {
		t.Errorf("own headers lost: %v %v", rec.msgs[0].msg.Headers, rec.msgs[2].msg.Headers)
	}
	// The caller's messages are unchanged.
	if built.Headers != nil || len(delivered.Headers) != 1 {
		t.Errorf("the caller's message changed: %v %v", built.Headers, delivered.Headers)
	}
	want := []string{"outer tasks.add", "inner tasks.add", "outer tasks.mul", "inner tasks.mul",
		"outer tasks.retry", "inner tasks.retry", "outer tasks.refused", "inner tasks.refused"}
	if len(calls) != len(want) {
		t.Fatalf("calls %v", calls)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Fatalf("calls %v, want %v", calls, want)
		}
	}
}

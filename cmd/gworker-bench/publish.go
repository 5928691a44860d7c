package main

import (
	"context"
	"fmt"
	"strconv"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
)

// batch is a run's task messages, encoded before the clock starts.
type batch struct {
	ids  []string
	pubs []amqp.Publishing
	raws []*protocol.RawMessage
	key  string // routing key (the queue), on the default exchange
	// prefix is shared by every id of the batch, so the run's results can
	// be followed with one pattern subscription.
	prefix string
}

// buildBatch builds n tasks.add(i, i) calls to queue exactly as the
// producer sends them (the messages Celery 5.2.6's add.apply_async(queue=)
// sends; the producer's encoding is checked against captured ones). The
// ids are random UUID4s whose first 8 hex digits are the same for the
// whole batch. opts are added to every call (a countdown, say).
func buildBatch(queue string, n int, opts ...producer.Option) (*batch, error) {
	prefix := producer.NewID()[:8]
	p := producer.New(nil, producer.Options{
		NewID: func() string { return prefix + producer.NewID()[8:] },
	})
	b := &batch{key: queue, prefix: prefix}
	for i := 0; i < n; i++ {
		m, err := p.Build("tasks.add", []any{int64(i), int64(i)}, nil, append([]producer.Option{producer.Queue(queue)}, opts...)...)
		if err != nil {
			return nil, err
		}
		if m.Route.Exchange != "" || m.Route.RoutingKey != queue {
			return nil, fmt.Errorf("unexpected route %+v", m.Route)
		}
		raw, err := p.Encode(m)
		if err != nil {
			return nil, err
		}
		h, err := amqptransport.HeadersToAMQP(raw.Headers)
		if err != nil {
			return nil, err
		}
		pub := amqp.Publishing{
			Headers:         h,
			ContentType:     raw.ContentType,
			ContentEncoding: raw.ContentEncoding,
			DeliveryMode:    raw.DeliveryMode,
			CorrelationId:   raw.CorrelationID,
			ReplyTo:         raw.ReplyTo,
			Expiration:      raw.Expiration,
			Body:            raw.Body,
		}
		if raw.HasPriority {
			pub.Priority = raw.Priority
		}
		b.raws = append(b.raws, raw)
		b.ids = append(b.ids, m.ID)
		b.pubs = append(b.pubs, pub)
	}
	return b, nil
}

// publishAll publishes the batch on one channel in confirm mode, keeping at
// most window messages unconfirmed, and returns once all are confirmed.
func publishAll(ctx context.Context, conn *amqp.Connection, b *batch, window int) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return err
	}
	pending := make([]*amqp.DeferredConfirmation, 0, len(b.pubs))
	waited := 0
	for i := range b.pubs {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", b.key, false, false, b.pubs[i])
		if err != nil {
			return fmt.Errorf("publish %d: %w", i, err)
		}
		pending = append(pending, dc)
		for len(pending)-waited > window {
			if ok, err := pending[waited].WaitContext(ctx); err != nil || !ok {
				return fmt.Errorf("message %d not confirmed (ack=%v): %v", waited, ok, err)
			}
			waited++
		}
	}
	for ; waited < len(pending); waited++ {
		if ok, err := pending[waited].WaitContext(ctx); err != nil || !ok {
			return fmt.Errorf("message %d not confirmed (ack=%v): %v", waited, ok, err)
		}
	}
	return nil
}

// expected is the result of task i of a batch: tasks.add(i, i).
func expected(i int) string { return strconv.Itoa(2 * i) }

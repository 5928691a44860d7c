package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/gworker/gworker/redistransport"
)

// benchBroker is what a run does to the broker under test.
type benchBroker interface {
	declare(queue string) error
	remove(queue string)
	publishAll(ctx context.Context, b *batch, window int) error
	// waitConsumer returns once a worker consumes queue (e2e mode).
	waitConsumer(ctx context.Context, queue string) error
	// length returns how many messages wait in queue.
	length(queue string) (int, error)
}

type amqpBroker struct{ conn *amqp.Connection }

func (a amqpBroker) declare(q string) error { return declareQueue(a.conn, q) }
func (a amqpBroker) remove(q string)        { deleteQueue(a.conn, q) }
func (a amqpBroker) publishAll(ctx context.Context, b *batch, window int) error {
	return publishAll(ctx, a.conn, b, window)
}
func (a amqpBroker) waitConsumer(ctx context.Context, q string) error {
	return waitConsumer(ctx, a.conn, q)
}
func (a amqpBroker) length(q string) (int, error) {
	ch, err := a.conn.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
	return st.Messages, err
}

// redisBroker is kombu's Redis transport: the queue is a list, messages
// are kombu's JSON envelopes pushed with LPUSH.
type redisBroker struct{ rdb *redis.Client }

// declare binds the queue as kombu does (the worker does it too).
func (r redisBroker) declare(q string) error {
	return r.rdb.SAdd(context.Background(), redistransport.BindingPrefix+q, q+redistransport.DefaultSep+redistransport.DefaultSep+q).Err()
}

func (r redisBroker) remove(q string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys := []string{redistransport.BindingPrefix + q}
	for _, s := range redistransport.DefaultPrioritySteps {
		if s == 0 {
			keys = append(keys, q)
		} else {
			keys = append(keys, fmt.Sprintf("%s%s%d", q, redistransport.DefaultSep, s))
		}
	}
	r.rdb.Del(ctx, keys...)
}

// publishAll pushes the envelopes in pipelines of window messages.
func (r redisBroker) publishAll(ctx context.Context, b *batch, window int) error {
	for lo := 0; lo < len(b.raws); lo += window {
		hi := min(lo+window, len(b.raws))
		p := r.rdb.Pipeline()
		for _, raw := range b.raws[lo:hi] {
			env, err := redistransport.Envelope(raw, "", b.key)
			if err != nil {
				return err
			}
			p.LPush(ctx, b.key, env)
		}
		if _, err := p.Exec(ctx); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	return nil
}

func (r redisBroker) length(q string) (int, error) {
	n, err := r.rdb.LLen(context.Background(), q).Result()
	return int(n), err
}

func (r redisBroker) waitConsumer(context.Context, string) error {
	return errors.New("e2e mode needs a consumer count, which Redis has not: use -modes prefill")
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
)

// Notifications the bare-ack consumer publishes on its -notify channel, so
// that the bench can time it as it times the workers that write results.
const (
	bareAckFirst = "first" // the first acknowledgement was written
	bareAckDone  = "done"  // the n-th message was acknowledged
)

// runBareAck is the ceiling of the bench: the least an amqp091-go program
// can do with a task message, which is to acknowledge it. One goroutine
// consumes with the same prefetch window as the workers and acknowledges
// in batches (basic.ack multiple=true): whenever batch deliveries are
// unacknowledged, and whenever it has caught up with the broker. It reads
// nothing from the messages and writes no result; it counts them, and
// publishes on a Redis channel when the first acknowledgement is written
// and when the n-th message is acknowledged (the bench's clock).
func runBareAck(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("gworker-bench bare-ack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	broker := fs.String("broker", "amqp://guest:guest@127.0.0.1:5672/", "broker URL")
	redisURL := fs.String("redis", "redis://127.0.0.1:6379/0", "Redis URL of the notifications")
	notify := fs.String("notify", "", "Redis channel to publish \""+bareAckFirst+"\" and \""+bareAckDone+"\" on")
	queue := fs.String("queue", "celery", "queue to consume")
	prefetch := fs.Int("prefetch", 64, "prefetch count")
	batch := fs.Int("batch", 0, "acknowledge at the latest every this many deliveries (default: a quarter of the prefetch)")
	n := fs.Int("n", 0, "messages to expect (\""+bareAckDone+"\" is published when they are acknowledged)")
	global := fs.Bool("global-qos", false, "apply the prefetch to the channel (basic.qos global) instead of the consumer")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *n < 1 || *notify == "" || *prefetch < 0 {
		fmt.Fprintln(stderr, "bare-ack: -n and -notify are required, -prefetch must not be negative")
		return 2
	}
	if *batch <= 0 {
		*batch = max(1, *prefetch/4)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bareAck(ctx, *broker, *redisURL, *notify, *queue, *prefetch, *batch, *n, *global); err != nil {
		fmt.Fprintln(stderr, "bare-ack:", err)
		return 1
	}
	return 0
}

// consumeQueue opens a channel on conn with the prefetch, declares queue as
// kombu does and consumes it without auto-ack.
func consumeQueue(conn *amqp.Connection, queue, tag string, prefetch int, globalQoS bool) (*amqp.Channel, <-chan amqp.Delivery, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, nil, err
	}
	if err := ch.Qos(prefetch, 0, globalQoS); err != nil {
		return nil, nil, err
	}
	if err := ch.ExchangeDeclare(queue, "direct", true, false, false, false, nil); err != nil {
		return nil, nil, err
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		return nil, nil, err
	}
	if err := ch.QueueBind(queue, queue, queue, false, nil); err != nil {
		return nil, nil, err
	}
	deliveries, err := ch.Consume(queue, tag, false, false, false, false, nil)
	if err != nil {
		return nil, nil, err
	}
	return ch, deliveries, nil
}

func bareAck(ctx context.Context, brokerURL, redisURL, notify, queue string, prefetch, batch, n int, globalQoS bool) error {
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	conn, err := amqp.Dial(brokerURL)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, deliveries, err := consumeQueue(conn, queue, "bare-ack", prefetch, globalQoS)
	if err != nil {
		return err
	}
	var (
		last    uint64 // highest delivery tag received
		pending int    // received and not acknowledged
		seen    int
		firstc  = make(chan error, 1)
		first   bool
	)
	flush := func() error {
		if pending == 0 {
			return nil
		}
		if err := ch.Ack(last, true); err != nil {
			return err
		}
		pending = 0
		if !first {
			first = true
			// Off the consuming goroutine: the ceiling waits for no
			// round trip of the bench's.
			go func() { firstc <- rdb.Publish(context.WithoutCancel(ctx), notify, bareAckFirst).Err() }()
		}
		return nil
	}
	for {
		var (
			d  amqp.Delivery
			ok bool
		)
		select {
		case d, ok = <-deliveries:
		default:
			// Caught up with the broker: settle what was received before
			// waiting for more.
			if err := flush(); err != nil {
				return err
			}
			select {
			case d, ok = <-deliveries:
			case <-ctx.Done():
				return nil
			}
		}
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return errors.New("the broker closed the consumer")
		}
		last = d.DeliveryTag
		pending++
		seen++
		if pending >= batch || seen == n {
			if err := flush(); err != nil {
				return err
			}
		}
		if seen == n {
			if err := <-firstc; err != nil {
				return fmt.Errorf("notify: %w", err)
			}
			if err := rdb.Publish(ctx, notify, bareAckDone).Err(); err != nil {
				return fmt.Errorf("notify: %w", err)
			}
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
)

// runMinLoop is the reference the bench compares gworker with: the least a
// Go program can do to serve tasks.add for Celery over RabbitMQ and Redis.
// It consumes with a prefetch window, reads the task id from the headers and
// the arguments from the body, and for each message runs SETEX and PUBLISH
// of the result in one pipeline, then acknowledges it, on N goroutines. It
// has none of a worker's duties (no validation, no retries, no logging, no
// never-overwrite-SUCCESS check), which is what makes it a ceiling.
func runMinLoop(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("gworker-bench minloop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	broker := fs.String("broker", "amqp://guest:guest@127.0.0.1:5672/", "broker URL")
	backend := fs.String("result-backend", "redis://127.0.0.1:6379/0", "Redis URL")
	queue := fs.String("queue", "celery", "queue to consume")
	conc := fs.Int("c", 16, "goroutines")
	prefetch := fs.Int("prefetch", 64, "prefetch count")
	global := fs.Bool("global-qos", false, "apply the prefetch to the channel (basic.qos global, as Celery and gworker do) instead of the consumer")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	loop := func() error { return minLoop(ctx, *broker, *backend, *queue, *conc, *prefetch, *global) }
	if strings.HasPrefix(*broker, "redis") {
		loop = func() error { return minLoopRedis(ctx, *broker, *backend, *queue, *conc, *prefetch) }
	}
	if err := loop(); err != nil {
		fmt.Fprintln(stderr, "minloop:", err)
		return 1
	}
	return 0
}

func minLoop(ctx context.Context, brokerURL, redisURL, queue string, conc, prefetch int, globalQoS bool) error {
	conn, err := amqp.Dial(brokerURL)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, deliveries, err := consumeQueue(conn, queue, "minloop", prefetch, globalQoS)
	if err != nil {
		return err
	}
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return err
	}
	opt.PoolSize = conc
	rdb := redis.NewClient(opt)
	defer rdb.Close()

	var wg sync.WaitGroup
	errc := make(chan error, conc)
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range deliveries {
				if err := handleMin(ctx, rdb, &d); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	_ = ch.Cancel("minloop", false)
	_ = conn.Close()
	wg.Wait()
	return err
}

func handleMin(ctx context.Context, rdb *redis.Client, d *amqp.Delivery) error {
	id, _ := d.Headers["id"].(string)
	var body [3]json.RawMessage
	if err := json.Unmarshal(d.Body, &body); err != nil {
		return d.Reject(false)
	}
	var args []int64
	if err := json.Unmarshal(body[0], &args); err != nil || len(args) != 2 || id == "" {
		return d.Reject(false)
	}
	val := make([]byte, 0, 160)
	val = append(val, `{"status": "SUCCESS", "result": `...)
	val = strconv.AppendInt(val, args[0]+args[1], 10)
	val = append(val, `, "traceback": null, "children": [], "date_done": "`...)
	val = time.Now().UTC().AppendFormat(val, "2006-01-02T15:04:05.000000")
	val = append(val, `", "task_id": "`...)
	val = append(val, id...)
	val = append(val, `"}`...)
	key := "celery-task-meta-" + id
	p := rdb.Pipeline()
	p.SetEx(ctx, key, val, 24*time.Hour)
	p.Publish(ctx, key, val)
	if _, err := p.Exec(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	return d.Ack(false)
}

package gworker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker"
	"github.com/gworker/gworker/canvas"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/sqlbackend"
)

type Area struct {
	Area float64 `json:"area"`
	Unit string  `json:"unit"`
}

func double(ctx context.Context, x int) (int, error) { return 2 * x, nil }

func area(ctx context.Context, w, h float64) (Area, error) {
	return Area{Area: w * h, Unit: "cm2"}, nil
}

// A service's whole main function: the binary then takes celery worker's
// command line (`mysvc worker -Q go -c 8 ...`), `mysvc call` and
// `mysvc result`.
func ExampleApp_Main() {
	app := gworker.New(gworker.Config{})
	app.MustRegister("tasks.double", double, gworker.Params("x"))
	app.MustRegister("tasks.area", area, gworker.Params("w", "h"))
	app.Main()
}

// Start a worker from Go, send it tasks and read their results, as a
// Python producer would; Stop shuts it down warmly. It needs RabbitMQ and
// Redis on their local ports.
func ExampleApp_Start() {
	queue := "gworker.example." + strconv.Itoa(os.Getpid())
	app := gworker.New(gworker.Config{
		BrokerURL:     "amqp://guest:guest@localhost:5672//",
		ResultBackend: "redis://localhost:6379/0",
		Queues:        []string{queue},
		DefaultQueue:  queue,
		Concurrency:   4,
		ResultExpires: time.Minute,
		Logger:        zap.NewNop(),
	})
	defer removeQueue(queue)
	app.MustRegister("tasks.double", double, gworker.Params("x"))
	app.MustRegister("tasks.area", area, gworker.Params("w", "h"))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		fmt.Println("start:", err)
		return
	}
	defer app.Stop(ctx)

	r, err := app.SendTask(ctx, "tasks.double", nil, map[string]any{"x": 21})
	if err != nil {
		fmt.Println("send:", err)
		return
	}
	v, err := r.Get(ctx, result.WithTimeout(10*time.Second))
	fmt.Println(v, err)

	r, _ = app.SendTask(ctx, "tasks.area", []any{3.0, 2.0}, nil, producer.Queue(queue))
	v, _ = r.Get(ctx, result.WithTimeout(10*time.Second))
	fmt.Println(v)
	g, err := app.Group(ctx, canvas.Sig("tasks.double", 1), canvas.Sig("tasks.double", 2))
	if err != nil {
		fmt.Println("group:", err)
		return
	}
	vals, err := g.Join(ctx, result.WithTimeout(10*time.Second))
	fmt.Println(vals, err)
	// Output:
	// 42 <nil>
	// map[area:6 unit:cm2]
	// [2 4] <nil>
}

// A program that keeps its results in Celery's SQL tables registers the
// SQL backends beside the defaults; without them a db+ URL is refused at
// start. No connection is made until the worker starts.
func ExampleWithResultBackend() {
	cfg := gworker.Config{ResultBackend: "db+postgresql://celery@db.example/results"}
	if _, err := gworker.NewApp(cfg); err != nil {
		fmt.Println("without sqlbackend.Register:", errors.Is(err, gworker.ErrInvalidConfig))
	}
	app, err := gworker.NewApp(cfg, gworker.WithResultBackend(sqlbackend.Register))
	fmt.Println("with it:", app != nil, err)
	// Output:
	// without sqlbackend.Register: true
	// with it: true <nil>
}

package gworkertest_test

import (
	"context"
	"fmt"

	"github.com/gworker/gworker/canvas"
	"github.com/gworker/gworker/gworkertest"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

// RunFunc runs one task as a worker would, with no broker: arguments bind
// as Python's, and failures are Python exceptions.
func ExampleRunFunc() {
	ctx := context.Background()
	add := func(ctx context.Context, x, y int) (int, error) { return x + y, nil }

	run, err := gworkertest.RunFunc(ctx, "tasks.add", add, []any{2}, map[string]any{"y": 3}, worker.Params("x", "y"))
	fmt.Println(run.State, run.Value, err)

	run, _ = gworkertest.RunFunc(ctx, "tasks.add", add, []any{2}, nil, worker.Params("x", "y"))
	fmt.Println(run.State, run.Err())
	// Output:
	// SUCCESS 5 <nil>
	// FAILURE TypeError("add() missing 1 required positional argument: 'y'")
}

// A retry is reported with the message the worker would publish, not run.
func ExampleRunTask_retry() {
	reg := worker.NewRegistry()
	reg.MustRegister("tasks.fetch", func(ctx context.Context, url string) (string, error) {
		return "", worker.Retry(worker.PyError("ConnectionError", "refused"), worker.MaxRetries(3))
	}, worker.Params("url"))

	run, _ := gworkertest.RunTask(context.Background(), reg, "tasks.fetch", []any{"http://example.invalid"}, nil)
	fmt.Println(run.State, run.Exception, run.Retry.Retries, run.Retry.Args)
	// Output: RETRY ConnectionError('refused') 1 [http://example.invalid]
}

// An Env runs a worker on the in-memory broker: tasks and canvas work as
// they would on RabbitMQ and Redis. In a test, gworkertest.New(t) builds
// it and stops it when the test ends.
func ExampleEnv() {
	ctx := context.Background()
	env, err := gworkertest.Open(gworkertest.Config{})
	if err != nil {
		panic(err)
	}
	defer env.Close()
	env.Registry.MustRegister("tasks.add", func(x, y int) int { return x + y }, worker.Params("x", "y"))
	env.Registry.MustRegister("tasks.xsum", func(xs []int) int {
		s := 0
		for _, x := range xs {
			s += x
		}
		return s
	}, worker.Params("xs"))
	if err := env.Start(ctx); err != nil {
		panic(err)
	}

	r, _ := env.SendTask(ctx, "tasks.add", []any{2, 3}, nil)
	m, _ := env.Wait(ctx, r.ID())
	fmt.Println(m.Status, m.Result)

	chord, _ := canvas.Chord([]*canvas.Signature{canvas.Sig("tasks.add", 1, 1), canvas.Sig("tasks.add", 2, 2)},
		canvas.Sig("tasks.xsum")).ApplyAsync(ctx, env.Producer)
	m, _ = env.Wait(ctx, chord.ID())
	fmt.Println(m.Status, m.Result)
	// Output:
	// SUCCESS 5
	// SUCCESS 6
}

// The broker keeps what the worker rejected: here a message that is not a
// task.
func ExampleBroker_DeadLetters() {
	ctx := context.Background()
	env, _ := gworkertest.Open(gworkertest.Config{})
	_ = env.Start(ctx)
	_ = env.Broker.Publish(ctx, "", env.Queue(), &protocol.RawMessage{
		ContentType: "application/json", ContentEncoding: "utf-8", Body: []byte(`{"hello": 1}`),
	})
	_ = env.Broker.WaitEmpty(ctx, env.Queue())
	_ = env.Close()
	for _, d := range env.Broker.DeadLetters() {
		fmt.Println(d.Queue, d.Reason, string(d.Raw.Body))
	}
	// Output: celery rejected {"hello": 1}
}

// The value is read back as Python reads it from the result backend: a
// struct is a dict, and a float stays a float even when it is integral.
func ExampleRunFunc_struct() {
	type Area struct {
		Area float64 `json:"area"`
		Unit string  `json:"unit"`
	}
	area := func(ctx context.Context, w, h float64) (Area, error) { return Area{Area: w * h, Unit: "cm2"}, nil }

	run, _ := gworkertest.RunFunc(context.Background(), "tasks.area", area, []any{2.0, 3.0}, nil, worker.Params("w", "h"))
	v := run.Value.(map[string]any)
	fmt.Printf("%T %v %v\n", v["area"], v["area"], v["unit"])
	// Output: float64 6 cm2
}

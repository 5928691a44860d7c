package worker_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gworker/gworker/gworkertest"
	"github.com/gworker/gworker/worker"
)

// A middleware around every task: an audit line before it starts and one
// with its outcome once its result is stored, as Celery's task_prerun,
// task_postrun and task_failure signals would give.
func ExampleMiddleware() {
	audit := func(next worker.RunFunc) worker.RunFunc {
		return func(ctx context.Context, req *worker.Request) error {
			fmt.Printf("start %s retries=%d\n", req.Task, req.Retries)
			err := next(ctx, req)
			var failed *worker.TaskFailedError
			switch {
			case err == nil:
				fmt.Printf("done %s\n", req.Task)
			case errors.As(err, &failed):
				fmt.Printf("failed %s: %s\n", req.Task, failed.Exception.Type)
			default:
				fmt.Printf("ended %s: %v\n", req.Task, err)
			}
			return err
		}
	}
	reg := worker.NewRegistry()
	reg.MustRegister("tasks.div", func(a, b int) (int, error) {
		if b == 0 {
			return 0, worker.PyError("ZeroDivisionError", "division by zero")
		}
		return a / b, nil
	})
	env, _ := gworkertest.Open(gworkertest.Config{Registry: reg,
		Worker: worker.Config{Concurrency: 1, Middleware: []worker.Middleware{audit}}})
	defer env.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = env.Start(ctx)
	for _, b := range []int{2, 0} {
		r, _ := env.SendTask(ctx, "tasks.div", []any{6, b}, nil)
		_, _ = env.Wait(ctx, r.ID())
	}
	// Output:
	// start tasks.div retries=0
	// done tasks.div
	// start tasks.div retries=0
	// failed tasks.div: ZeroDivisionError
}

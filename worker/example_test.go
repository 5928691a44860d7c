package worker_test

import (
	"context"
	"fmt"
	"time"

	"github.com/gworker/gworker/worker"
)

// A plain Go function registered with parameter names binds positional
// and keyword arguments as Python does.
func ExampleRegistry_Register() {
	reg := worker.NewRegistry()
	reg.MustRegister("tasks.add", func(ctx context.Context, x, y int) (int, error) {
		return x + y, nil
	}, worker.Params("x", "y"))

	task, _ := reg.Lookup("tasks.add")
	// add(2, y=3), as decoded from a message:
	v, err := task.Handler(context.Background(), []any{int64(2)}, map[string]any{"y": int64(3)})
	fmt.Println(v, err)
	// add(2): Python's TypeError.
	_, err = task.Handler(context.Background(), []any{int64(2)}, nil)
	fmt.Println(err)
	// Output:
	// 5 <nil>
	// TypeError("add() missing 1 required positional argument: 'y'")
}

// A task chooses the Python exception its failure has.
func ExamplePyError() {
	err := worker.PyError("KeyError", "missing")
	fmt.Println(worker.ToException(err).Type, err)
	// Output: KeyError KeyError('missing')
}

// A task retries itself as Celery's self.retry(exc=..., countdown=5).
func ExampleRetry() {
	fetch := func(ctx context.Context, url string) (string, error) {
		return "", worker.Retry(worker.PyError("ConnectionError", "refused"), worker.Countdown(5*time.Second), worker.MaxRetries(3))
	}
	_, err := fetch(context.Background(), "http://example.invalid")
	fmt.Println(err)
	// Output: Retry in 5s: ConnectionError('refused')
}

// Typed registration binds one struct of arguments.
func ExampleRegisterTyped() {
	type area struct {
		W float64 `celery:"w"`
		H float64 `celery:"h"`
	}
	reg := worker.NewRegistry()
	_ = worker.RegisterTyped(reg, "tasks.area", func(ctx context.Context, in area) (float64, error) {
		return in.W * in.H, nil
	})
	task, _ := reg.Lookup("tasks.area")
	v, _ := task.Handler(context.Background(), []any{2.0}, map[string]any{"h": int64(3)})
	fmt.Println(v)
	// Output: 6
}

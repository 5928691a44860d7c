// Package demo holds the demo tasks compiled into the gworker binary, for
// trying gworker from Python and for tests: tasks.add, tasks.mul,
// tasks.xsum, tasks.echo, tasks.sleep, tasks.raise_error, the typed
// tasks.double and tasks.area, and the ones that exercise results and
// retries (tasks.flaky, tasks.retry_later).
package demo

import (
	"context"
	"fmt"
	"math"
	"math/big"
	"time"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

// Register adds the demo tasks to r.
func Register(r *worker.Registry) error {
	regs := []struct {
		name string
		fn   any
		opts []worker.Option
	}{
		{"tasks.add", Add, []worker.Option{worker.Params("x", "y")}},
		{"tasks.mul", Mul, []worker.Option{worker.Params("x", "y")}},
		{"tasks.xsum", XSum, []worker.Option{worker.Params("numbers")}},
		{"tasks.echo", Echo, []worker.Option{worker.Params("value")}},
		{"tasks.sleep", Sleep, []worker.Option{worker.Params("seconds")}},
		{"tasks.raise_error", RaiseError, []worker.Option{worker.Params("message"), worker.Default("message", "boom")}},
		{"tasks.flaky", Flaky, []worker.Option{worker.Params("times")}},
		{"tasks.retry_later", RetryLater, []worker.Option{worker.Params("times", "seconds")}},
		{"tasks.double", Double, []worker.Option{worker.Params("x")}},
		{"tasks.area", RectArea, []worker.Option{worker.Params("w", "h")}},
	}
	for _, reg := range regs {
		if err := r.Register(reg.name, reg.fn, reg.opts...); err != nil {
			return err
		}
	}
	return nil
}

// Add returns x + y with Python's rules: ints stay ints (of any size), the
// sum is a float if either is a float, str and list concatenate.
func Add(x, y any) (any, error) { return binop("+", x, y) }

// Mul returns x * y with Python's numeric rules.
func Mul(x, y any) (any, error) { return binop("*", x, y) }

// XSum returns the sum of a list of numbers (0 for an empty list).
func XSum(numbers []any) (any, error) {
	var acc any = int64(0)
	for _, n := range numbers {
		v, err := binop("+", acc, n)
		if err != nil {
			return nil, err
		}
		acc = v
	}
	return acc, nil
}

// Echo returns its argument unchanged.
func Echo(value any) any { return value }

// Sleep sleeps for seconds and returns them; it returns early, with the
// context's cause as its error, when its context is cancelled (a soft time
// limit or a cold shutdown).
func Sleep(ctx context.Context, seconds any) (any, error) {
	var f float64
	switch s := seconds.(type) {
	case int64:
		f = float64(s)
	case float64:
		f = s
	default:
		return nil, protocol.NewException("TypeError", fmt.Sprintf("sleep() argument 'seconds' must be a number, not %s", protocol.TypeName(seconds)))
	}
	if f < 0 || math.IsNaN(f) {
		return nil, protocol.NewException("ValueError", "sleep length must be non-negative")
	}
	t := time.NewTimer(time.Duration(f * float64(time.Second)))
	defer t.Stop()
	select {
	case <-t.C:
		return seconds, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// RaiseError fails as Python's KeyError(message).
func RaiseError(message any) error { return protocol.NewException("KeyError", message) }

func toBig(v any) (*big.Int, bool) {
	switch n := v.(type) {
	case int64:
		return big.NewInt(n), true
	case *big.Int:
		return n, true
	case bool:
		if n {
			return big.NewInt(1), true
		}
		return big.NewInt(0), true
	}
	return nil, false
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int64:
		return float64(n), true
	case *big.Int:
		f, _ := new(big.Float).SetInt(n).Float64()
		return f, true
	case bool:
		if n {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// normInt returns an int64 when the value fits, as the decoder does.
func normInt(b *big.Int) any {
	if b.IsInt64() {
		return b.Int64()
	}
	return b
}

func binop(op string, x, y any) (any, error) {
	// Two int64s that cannot overflow need no big.Int: the common case.
	if a, ok := x.(int64); ok {
		if b, ok := y.(int64); ok {
			if r, ok := fastInt(op, a, b); ok {
				return r, nil
			}
		}
	}
	if xi, ok := toBig(x); ok {
		if yi, ok := toBig(y); ok {
			r := new(big.Int)
			if op == "+" {
				r.Add(xi, yi)
			} else {
				r.Mul(xi, yi)
			}
			return normInt(r), nil
		}
	}
	if a, ok := toFloat(x); ok {
		if b, ok := toFloat(y); ok {
			if op == "+" {
				return a + b, nil
			}
			return a * b, nil
		}
	}
	if op == "+" {
		switch a := x.(type) {
		case string:
			if b, ok := y.(string); ok {
				return a + b, nil
			}
		case []any:
			if b, ok := y.([]any); ok {
				return append(append([]any{}, a...), b...), nil
			}
		}
	}
	return nil, protocol.NewException("TypeError", fmt.Sprintf("unsupported operand type(s) for %s: '%s' and '%s'", op, protocol.TypeName(x), protocol.TypeName(y)))
}

// fastInt does int64 arithmetic when it cannot overflow.
func fastInt(op string, a, b int64) (int64, bool) {
	if op == "+" {
		s := a + b
		if (s > a) == (b > 0) {
			return s, true
		}
		return 0, false
	}
	if a == 0 || b == 0 {
		return 0, true
	}
	p := a * b
	if p/b != a || (a == -1 && b == math.MinInt64) || (b == -1 && a == math.MinInt64) {
		return 0, false
	}
	return p, true
}

// Flaky retries itself with a countdown of 0.1 s until it has been retried
// times times, then returns the retry count.
func Flaky(ctx context.Context, times int) (int, error) {
	req, _ := worker.RequestFromContext(ctx)
	retries := 0
	if req != nil {
		retries = req.Retries
	}
	if retries < times {
		return 0, worker.Retry(nil, worker.Countdown(100*time.Millisecond), worker.MaxRetries(times))
	}
	return retries, nil
}

// RetryLater retries itself times times, each time with a countdown of
// seconds, and then reports how its last message was delivered: the
// retries, the exchange and routing key it came with, and the largest
// count among its x-death entries (how often the broker dead-lettered it
// from one queue; 0 when it has none). A countdown of a second or more on
// a quorum queue goes through RabbitMQ's native delayed delivery.
func RetryLater(ctx context.Context, times int, seconds float64) (map[string]any, error) {
	req, _ := worker.RequestFromContext(ctx)
	if req == nil {
		return nil, protocol.NewException("RuntimeError", "retry_later() runs only as a task")
	}
	if req.Retries < times {
		return nil, worker.Retry(nil, worker.Countdown(time.Duration(seconds*float64(time.Second))), worker.MaxRetries(times))
	}
	deaths := int64(0)
	list, _ := req.Headers["x-death"].([]any)
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			if n, ok := m["count"].(int64); ok && n > deaths {
				deaths = n
			}
		}
	}
	return map[string]any{"retries": int64(req.Retries), "exchange": req.DeliveryInfo.Exchange,
		"routing_key": req.DeliveryInfo.RoutingKey, "x_death_max_count": deaths}, nil
}

// Double returns 2x. Its parameter is a Go int: Python's 3 and 3.0 bind,
// 2.5 fails with TypeError.
func Double(ctx context.Context, x int) (int, error) { return 2 * x, nil }

// Area is the result of tasks.area; Python receives it as a dict, with
// Area a float even when it is whole ({"area": 6.0, "unit": "cm2"}).
type Area struct {
	Area float64 `json:"area"`
	Unit string  `json:"unit"`
}

// RectArea returns the area of a w×h rectangle in cm².
func RectArea(ctx context.Context, w, h float64) (Area, error) {
	return Area{Area: w * h, Unit: "cm2"}, nil
}

package demo

import (
	"context"
	"errors"
	"math"
	"math/big"
	"testing"
	"time"

	"github.com/gworker/gworker/gworkertest"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

func TestArithmeticKeepsPythonTypes(t *testing.T) {
	big63 := new(big.Int).Lsh(big.NewInt(1), 63)
	cases := []struct {
		name string
		got  func() (any, error)
		want any
	}{
		{"int+int", func() (any, error) { return Add(int64(2), int64(2)) }, int64(4)},
		{"float+int", func() (any, error) { return Add(2.0, int64(2)) }, 4.0},
		{"overflow", func() (any, error) { return Add(int64(math.MaxInt64), int64(1)) }, big63},
		{"mul overflow", func() (any, error) { return Mul(int64(1)<<32, int64(1)<<31) }, big63},
		{"mul", func() (any, error) { return Mul(int64(6), int64(7)) }, int64(42)},
		{"str+str", func() (any, error) { return Add("a", "b") }, "ab"},
		{"xsum ints", func() (any, error) { return XSum([]any{int64(1), int64(2)}) }, int64(3)},
		{"xsum mixed", func() (any, error) { return XSum([]any{int64(1), 2.5}) }, 3.5},
		{"xsum empty", func() (any, error) { return XSum(nil) }, int64(0)},
	}
	for _, c := range cases {
		got, err := c.got()
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if b, ok := c.want.(*big.Int); ok {
			if g, ok := got.(*big.Int); !ok || g.Cmp(b) != 0 {
				t.Errorf("%s: got %#v, want %v", c.name, got, b)
			}
			continue
		}
		if got != c.want {
			t.Errorf("%s: got %#v, want %#v", c.name, got, c.want)
		}
	}
	_, err := Add(int64(1), "x")
	var exc *protocol.Exception
	if !errors.As(err, &exc) || exc.Type != "TypeError" || exc.Args[0] != "unsupported operand type(s) for +: 'int' and 'str'" {
		t.Errorf("int+str: %v", err)
	}
}

func TestSleepReturnsEarlyOnCancel(t *testing.T) {
	cause := errors.New("stop")
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(20*time.Millisecond, func() { cancel(cause) })
	if _, err := Sleep(ctx, int64(10)); !errors.Is(err, cause) {
		t.Fatalf("got %v", err)
	}
	if v, err := Sleep(context.Background(), 0.01); err != nil || v != 0.01 {
		t.Fatalf("got %v %v", v, err)
	}
}

func TestRegister(t *testing.T) {
	r := worker.NewRegistry()
	if err := Register(r); err != nil {
		t.Fatal(err)
	}
	task, err := r.Lookup("tasks.raise_error")
	if err != nil {
		t.Fatal(err)
	}
	_, err = task.Handler(context.Background(), nil, nil)
	var exc *protocol.Exception
	if !errors.As(err, &exc) || exc.Type != "KeyError" || exc.Args[0] != "boom" {
		t.Fatalf("raise_error(): %v", err)
	}
}

// The typed demo tasks, called as the worker calls them: 3.0 binds to an
// int, 2.5 is a TypeError, and a whole area is written as a float.
func TestTypedTasks(t *testing.T) {
	r := worker.NewRegistry()
	if err := Register(r); err != nil {
		t.Fatal(err)
	}
	call := func(name string, args []any, kwargs map[string]any) (any, error) {
		task, err := r.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		return task.Handler(context.Background(), args, kwargs)
	}
	if v, err := call("tasks.double", []any{3.0}, nil); err != nil || v != 6 {
		t.Errorf("double(3.0) = %v, %v", v, err)
	}
	_, err := call("tasks.double", []any{2.5}, nil)
	var exc *protocol.Exception
	if !errors.As(err, &exc) || exc.Type != "TypeError" || exc.Args[0] != "double() argument 'x' must be int, not float" {
		t.Errorf("double(2.5): %v", err)
	}
	v, err := call("tasks.area", []any{int64(2)}, map[string]any{"h": int64(3)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := protocol.MarshalJSON(v)
	if err != nil || string(b) != `{"area": 6.0, "unit": "cm2"}` {
		t.Errorf("area(2, h=3) = %s, %v", b, err)
	}
}

// tasks.retry_later retries as often as asked and reports its last
// delivery (through the in-memory broker: the default exchange).
func TestRetryLater(t *testing.T) {
	r := worker.NewRegistry()
	if err := Register(r); err != nil {
		t.Fatal(err)
	}
	env := gworkertest.NewEnv(t, gworkertest.Config{Registry: r})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := env.Start(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := env.SendTask(ctx, "tasks.retry_later", []any{int64(2), 0.01}, nil)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := env.Wait(ctx, res.ID())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := meta.Result.(map[string]any)
	if meta.Status != "SUCCESS" || got["retries"] != int64(2) || got["routing_key"] != env.Queue() || got["x_death_max_count"] != int64(0) {
		t.Errorf("retry_later(2, 0.01): %s %#v", meta.Status, meta.Result)
	}
}

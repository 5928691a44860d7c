package worker

import (
	"context"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/gworker/gworker/protocol"
)

type point struct {
	X int     `json:"x"`
	Y float64 `json:"y"`
}

func TestRegisterBindsPositionalAndKeyword(t *testing.T) {
	r := NewRegistry()
	add := func(ctx context.Context, x, y int) (int, error) { return x + y, nil }
	if err := r.Register("tasks.add", add, Params("x", "y")); err != nil {
		t.Fatal(err)
	}
	task, err := r.Lookup("tasks.add")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args   []any
		kwargs map[string]any
		want   any
		errSub string
	}{
		{[]any{int64(2), int64(3)}, nil, 5, ""},
		{[]any{int64(2)}, map[string]any{"y": int64(3)}, 5, ""},
		{nil, map[string]any{"x": int64(1), "y": int64(3)}, 4, ""},
		{[]any{int64(2)}, nil, nil, "add() missing 1 required positional argument: 'y'"},
		{nil, nil, nil, "add() missing 2 required positional arguments: 'x' and 'y'"},
		{[]any{int64(1), int64(2), int64(3)}, nil, nil, "add() takes 2 positional arguments but 3 were given"},
		{[]any{int64(1), int64(2)}, map[string]any{"z": int64(1)}, nil, "add() got an unexpected keyword argument 'z'"},
		{[]any{int64(1), int64(2)}, map[string]any{"x": int64(1)}, nil, "add() got multiple values for argument 'x'"},
		{[]any{"a", int64(2)}, nil, nil, "add() argument 'x' must be int, not str"},
		{[]any{1.5, int64(2)}, nil, nil, "add() argument 'x' must be int, not float"},
		{[]any{new(big.Int).Lsh(big.NewInt(1), 70), int64(2)}, nil, nil, "out of range"},
	}
	for _, c := range cases {
		got, err := task.Handler(context.Background(), c.args, c.kwargs)
		if c.errSub != "" {
			var exc *protocol.Exception
			if !errors.As(err, &exc) || exc.Type != "TypeError" {
				t.Errorf("%v %v: want TypeError, got %v", c.args, c.kwargs, err)
				continue
			}
			if !strings.Contains(exc.Args[0].(string), c.errSub) {
				t.Errorf("%v %v: message %q lacks %q", c.args, c.kwargs, exc.Args[0], c.errSub)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%v %v: got %v, %v; want %v", c.args, c.kwargs, got, err, c.want)
		}
	}
}

func TestRegisterDefaultsAndShapes(t *testing.T) {
	r := NewRegistry()
	r.MustRegister("t.greet", func(name string) string { return "hi " + name }, Params("name"), Default("name", "you"))
	r.MustRegister("t.noop", func() {})
	r.MustRegister("t.fail", func() error { return errors.New("bad") })
	r.MustRegister("t.sum", func(xs []float64, opts map[string]bool, p point, ptr *int) (any, error) {
		s := 0.0
		for _, x := range xs {
			s += x
		}
		if ptr != nil {
			s += float64(*ptr)
		}
		return s + float64(p.X) + p.Y, nil
	})
	call := func(name string, args []any, kwargs map[string]any) (any, error) {
		task, err := r.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		return task.Handler(context.Background(), args, kwargs)
	}
	if v, err := call("t.greet", nil, nil); err != nil || v != "hi you" {
		t.Errorf("default: %v %v", v, err)
	}
	if v, err := call("t.greet", nil, map[string]any{"name": "bob"}); err != nil || v != "hi bob" {
		t.Errorf("kwarg: %v %v", v, err)
	}
	if v, err := call("t.noop", nil, nil); err != nil || v != nil {
		t.Errorf("noop: %v %v", v, err)
	}
	if _, err := call("t.fail", nil, nil); err == nil || err.Error() != "bad" {
		t.Errorf("fail: %v", err)
	}
	v, err := call("t.sum", []any{[]any{int64(1), 2.5}, map[string]any{"a": true}, map[string]any{"x": int64(1), "y": 0.5}, int64(4)}, nil)
	if err != nil || v != 9.0 {
		t.Errorf("sum: %v %v", v, err)
	}
	if _, err := call("t.sum", []any{"notalist", nil, map[string]any{}, nil}, nil); err == nil || !strings.Contains(err.Error(), "must be list, not str") {
		t.Errorf("args string must not bind to a list: %v", err)
	}
	if _, err := r.Lookup("nope"); !errors.Is(err, ErrNotRegistered) {
		t.Errorf("lookup: %v", err)
	}
	if err := r.Register("t.noop", func() {}); err == nil {
		t.Error("duplicate registration accepted")
	}
	if err := r.Register("t.bad", func(a, b int) {}, Params("a")); err == nil {
		t.Error("wrong parameter count accepted")
	}
}

func TestRegisterTyped(t *testing.T) {
	type args struct {
		X    int64  `celery:"x"`
		Y    int64  `celery:"y"`
		Note string `json:"note"`
	}
	r := NewRegistry()
	err := RegisterTyped(r, "tasks.typed", func(ctx context.Context, a args) (int64, error) {
		return a.X * a.Y, nil
	}, Default("note", ""))
	if err != nil {
		t.Fatal(err)
	}
	task, _ := r.Lookup("tasks.typed")
	v, err := task.Handler(context.Background(), []any{int64(6)}, map[string]any{"y": int64(7)})
	if err != nil || v != int64(42) {
		t.Fatalf("got %v %v", v, err)
	}
	if _, err := task.Handler(context.Background(), []any{int64(6)}, nil); err == nil {
		t.Fatal("missing y accepted")
	}
}

func TestParseRateLimit(t *testing.T) {
	for in, want := range map[string]string{"10/s": "100ms", "100/m": "600ms", "1000/h": "3.6s", "4": "250ms", "": "0s", "0/s": "0s"} {
		d, err := ParseRateLimit(in)
		if err != nil || d.String() != want {
			t.Errorf("%q: %v %v, want %s", in, d, err, want)
		}
	}
	for _, bad := range []string{"x/s", "10/d", "-1/s"} {
		if _, err := ParseRateLimit(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestToException(t *testing.T) {
	if e := ToException(PyError("KeyError", "k")); e.Type != "KeyError" || e.Module != "builtins" {
		t.Errorf("typed: %+v", e)
	}
	wrapped := errors.Join(errors.New("ctx"), PyError("ValueError", "v"))
	if e := ToException(wrapped); e.Type != "ValueError" {
		t.Errorf("wrapped: %+v", e)
	}
	if e := ToException(errors.New("plain")); e.Type != DefaultExceptionType || e.Args[0] != "plain" {
		t.Errorf("plain: %+v", e)
	}
}

func TestAutoRetryBackoff(t *testing.T) {
	p := &AutoRetryPolicy{Backoff: 1e9, MaxBackoff: 5e9}
	for retries, want := range []int64{1e9, 2e9, 4e9, 5e9, 5e9} {
		if got := p.countdown(retries); int64(got) != want {
			t.Errorf("retry %d: %v", retries, got)
		}
	}
	p.Jitter = true
	for i := 0; i < 100; i++ {
		if d := p.countdown(2); d < 0 || d > 4e9 {
			t.Fatalf("jitter out of range: %v", d)
		}
	}
}

// The binding rule is protocol.ToGo's: an integral float binds to an int
// parameter (a JSON client may write 3.0), 2.5 is Python's TypeError, and
// a struct parameter takes a dict whose float fields may be whole.
func TestBindIntegralFloats(t *testing.T) {
	type area struct {
		W int     `json:"w"`
		H float64 `json:"h"`
	}
	r := NewRegistry()
	r.MustRegister("tasks.double", func(ctx context.Context, x int) (int, error) { return 2 * x, nil }, Params("x"))
	r.MustRegister("tasks.area", func(a area, scale []uint16) float64 { return float64(a.W) * a.H * float64(scale[0]) }, Params("a", "scale"))
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
	if v, err := call("tasks.double", nil, map[string]any{"x": -4.0}); err != nil || v != -8 {
		t.Errorf("double(x=-4.0) = %v, %v", v, err)
	}
	if v, err := call("tasks.area", []any{map[string]any{"w": 2.0, "h": int64(3)}, []any{1.0}}, nil); err != nil || v != 6.0 {
		t.Errorf("area = %v, %v", v, err)
	}
	for _, c := range []struct {
		name string
		args []any
		want string
	}{
		{"tasks.double", []any{2.5}, "double() argument 'x' must be int, not float"},
		{"tasks.double", []any{1e30}, "double() argument 'x' is out of range for int"},
		{"tasks.area", []any{map[string]any{"w": 2.5}, []any{}}, "area() argument 'a' key 'w' must be int, not float"},
		{"tasks.area", []any{map[string]any{}, []any{int64(70000)}}, "area() argument 'scale' item 0 is out of range for uint16"},
	} {
		_, err := call(c.name, c.args, nil)
		var exc *protocol.Exception
		if !errors.As(err, &exc) || exc.Type != "TypeError" || exc.Module != "builtins" || exc.Args[0] != c.want {
			t.Errorf("%s%v: %#v, want TypeError(%q)", c.name, c.args, err, c.want)
		}
	}
}

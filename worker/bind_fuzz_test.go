package worker

import (
	"context"
	"errors"
	"testing"

	"github.com/gworker/gworker/protocol"
)

type fuzzPoint struct {
	X int     `json:"x"`
	Y float64 `json:"y"`
	N *string `json:"n"`
}

// FuzzBind binds arbitrary JSON args and kwargs to task signatures of
// every supported shape. Binding never panics, and a failure is a Python
// TypeError (the tasks themselves always succeed).
func FuzzBind(f *testing.F) {
	for _, s := range []string{
		`[[1, 2], {}]`, `[["a", 1], {}]`, `[[1], {"b": 2}]`, `[[], {"a": 1, "b": 2, "c": 3}]`,
		`[[1.5, 2], {}]`, `[[18446744073709551616, 1], {}]`, `[[[1, 2, 3], {"k": 4}], {}]`,
		`[[{"x": 1, "y": 2.5, "n": "s"}], {}]`, `[[null, null], {}]`, `[[true, "x"], {}]`,
		`[[1e400], {}]`, `[[-1], {"extra": 1}]`, `[["12"], {}]`,
	} {
		f.Add([]byte(s))
	}
	ok := func(...any) error { return nil }
	binders := []*binder{}
	for _, fn := range []struct {
		fn     any
		params []string
	}{
		{func(a, b int) (int, error) { return a + b, ok() }, []string{"a", "b"}},
		{func(ctx context.Context, s string, n int64) string { return s }, []string{"s", "n"}},
		{func(a uint8, b float32, c bool) error { return ok() }, []string{"a", "b", "c"}},
		{func(xs []int, m map[string]int) int { return len(xs) + len(m) }, []string{"xs", "m"}},
		{func(p fuzzPoint, q *fuzzPoint) {}, []string{"p", "q"}},
		{func(v any, w []any, m map[string]any) any { return v }, []string{"v", "w", "m"}},
		{func(b []byte, s *string, i *int) {}, []string{"b", "s", "i"}},
		{func() {}, nil},
	} {
		var defaults map[string]any
		for _, p := range fn.params {
			if p == "c" || p == "m" {
				defaults = map[string]any{p: nil}
			}
		}
		b, err := newBinder("tasks.fuzz", fn.fn, fn.params, defaults)
		if err != nil {
			f.Fatal(err)
		}
		binders = append(binders, b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := protocol.UnmarshalJSON(data)
		if err != nil {
			return
		}
		pair, isList := v.([]any)
		if !isList || len(pair) != 2 {
			return
		}
		args, _ := pair[0].([]any)
		kwargs, _ := pair[1].(map[string]any)
		for _, b := range binders {
			_, err := b.call(context.Background(), args, kwargs)
			if err == nil {
				continue
			}
			var exc *protocol.Exception
			if !errors.As(err, &exc) || exc.Type != "TypeError" {
				t.Fatalf("%s: %v is not a TypeError", b.name, err)
			}
		}
	})
}

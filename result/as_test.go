package result_test

import (
	"errors"
	"math"
	"math/big"
	"reflect"
	"testing"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

func TestAs(t *testing.T) {
	big70 := new(big.Int).Lsh(big.NewInt(1), 70)
	check := func(name string, got, want any, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %#v, want %#v", name, got, want)
		}
	}
	i, err := result.As[int](int64(4))
	check("int", i, 4, err)
	i8, err := result.As[int8](int64(-7))
	check("int8", i8, int8(-7), err)
	u, err := result.As[uint64](big.NewInt(5))
	check("uint64 from big", u, uint64(5), err)
	f, err := result.As[float64](int64(3))
	check("float from int", f, 3.0, err)
	f2, err := result.As[float64](math.Inf(1))
	check("inf", f2, math.Inf(1), err)
	i2, err := result.As[int](2.0)
	check("integral float", i2, 2, err)
	s, err := result.As[string]("héllo")
	check("string", s, "héllo", err)
	l, err := result.As[[]int]([]any{int64(2), int64(4), int64(8)})
	check("[]int", l, []int{2, 4, 8}, err)
	m, err := result.As[map[string]float64](map[string]any{"a": 1.5, "b": int64(2)})
	check("map", m, map[string]float64{"a": 1.5, "b": 2}, err)
	type progress struct {
		Done  int `json:"done"`
		Total int `json:"total"`
	}
	p, err := result.As[progress](map[string]any{"done": int64(1), "total": int64(2)})
	check("struct", p, progress{1, 2}, err)
	b, err := result.As[*big.Int](big70)
	check("big", b, big70, err)
	a, err := result.As[any](nil)
	check("any", a, nil, err)

	for name, f := range map[string]func() error{
		"int from str":     func() error { _, err := result.As[int]("4"); return err },
		"int8 overflow":    func() error { _, err := result.As[int8](int64(300)); return err },
		"int from big":     func() error { _, err := result.As[int64](big70); return err },
		"uint from neg":    func() error { _, err := result.As[uint](int64(-1)); return err },
		"int from 2.5":     func() error { _, err := result.As[int](2.5); return err },
		"int from NaN":     func() error { _, err := result.As[int](math.NaN()); return err },
		"string from int":  func() error { _, err := result.As[string](int64(1)); return err },
		"bool from nil":    func() error { _, err := result.As[bool](nil); return err },
		"[]int from [str]": func() error { _, err := result.As[[]int]([]any{"a"}); return err },
		"struct from list": func() error { _, err := result.As[progress]([]any{int64(1)}); return err },
		"[]int from [2.5]": func() error { _, err := result.As[[]int]([]any{int64(1), 2.5}); return err },
		"struct int 2.5":   func() error { _, err := result.As[progress](map[string]any{"done": 2.5}); return err },
	} {
		if err := f(); !errors.Is(err, result.ErrConvert) || !errors.Is(err, protocol.ErrConvert) {
			t.Errorf("%s: err %v, want ErrConvert", name, err)
		}
	}
}

// As follows the rule task arguments are bound with: whole floats fill
// integers at any depth, NaN is a float like any other, and the message
// names the place that does not fit as a task's TypeError would.
func TestAsSameRuleAsBinding(t *testing.T) {
	type progress struct {
		Done  int     `json:"done"`
		Ratio float64 `json:"ratio"`
	}
	p, err := result.As[[]progress]([]any{map[string]any{"done": 3.0, "ratio": int64(1)}})
	if err != nil || !reflect.DeepEqual(p, []progress{{3, 1}}) {
		t.Errorf("[]progress = %#v, %v", p, err)
	}
	f, err := result.As[[]float64]([]any{math.NaN()})
	if err != nil || len(f) != 1 || !math.IsNaN(f[0]) {
		t.Errorf("[NaN] = %v, %v", f, err)
	}
	_, err = result.As[[]progress]([]any{map[string]any{"done": 2.5}})
	const want = "cannot convert result value to []result_test.progress: item 0 key 'done' must be int, not float"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}

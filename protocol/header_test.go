package protocol

import (
	"errors"
	"math"
	"math/big"
	"reflect"
	"testing"
	"time"
)

func TestHeaderValue(t *testing.T) {
	ts := time.Date(2030, 1, 1, 12, 0, 0, 500000000, time.FixedZone("x", 3600))
	cases := []struct {
		v, want any
	}{
		{nil, nil},
		{"s", "s"},
		{true, true},
		{7, int64(7)},
		{uint32(7), int64(7)},
		{uint64(math.MaxInt64), int64(math.MaxInt64)},
		{big.NewInt(-3), int64(-3)},
		{float32(0.1), 0.1},
		{2.0, 2.0},
		{[]byte("é"), "é"},
		{ts, "2030-01-01T11:00:00.500000+00:00"},
		{[]int{1, 2}, []any{int64(1), int64(2)}},
		{[]float64{1, 2}, []any{1.0, 2.0}},
		{Dict{{"a", 1}}, map[string]any{"a": int64(1)}},
		{map[string][]byte{"b": []byte("x")}, map[string]any{"b": "x"}},
		{area{Area: 6, Unit: "cm2"}, map[string]any{"area": 6.0, "unit": "cm2"}},
		{[]any{ts, &area{Area: 1}}, []any{"2030-01-01T11:00:00.500000+00:00", map[string]any{"area": 1.0, "unit": ""}}},
		{(*area)(nil), nil},
	}
	for _, c := range cases {
		got, err := HeaderValue(c.v)
		if err != nil {
			t.Errorf("HeaderValue(%#v): %v", c.v, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("HeaderValue(%#v) = %#v, want %#v", c.v, got, c.want)
		}
	}
	deep := any("x")
	for range MaxJSONDepth + 2 {
		deep = []any{deep}
	}
	for name, v := range map[string]any{
		"uint64":    uint64(math.MaxUint64),
		"big":       new(big.Int).Lsh(big.NewInt(1), 70),
		"bad utf-8": []byte{0xff},
		"int keys":  map[int]string{1: "a"},
		"chan":      make(chan int),
		"func":      []any{func() {}},
		"deep":      deep,
	} {
		if _, err := HeaderValue(v); !errors.Is(err, ErrUnsupportedValue) {
			t.Errorf("%s: err = %v, want ErrUnsupportedValue", name, err)
		}
	}
}

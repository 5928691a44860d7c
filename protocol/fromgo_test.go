package protocol

import (
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

type area struct {
	Area float64 `json:"area"`
	Unit string  `json:"unit"`
}

type celsius float64

func (c celsius) MarshalJSON() ([]byte, error) { return []byte(`{"celsius": 21.0}`), nil }

type level int

func (l level) MarshalText() ([]byte, error) { return []byte([]string{"low", "high"}[l]), nil }

type ptrMarshaler struct{ n int }

func (p *ptrMarshaler) MarshalJSON() ([]byte, error) { return []byte(`"ptr"`), nil }

type failing struct{}

func (failing) MarshalJSON() ([]byte, error) { return nil, errors.New("no way") }

type Base struct {
	ID    int     `json:"id"`
	Score float64 `json:"score"`
	Note  string
}

type Other struct {
	Note string
	Tag  string `json:"tag"`
}

type wrapper struct {
	Base
	*Other
	Name    string            `json:"name"`
	Skip    string            `json:"-"`
	Dash    string            `json:"-,"`
	Empty   string            `json:"empty,omitempty"`
	Zero    time.Time         `json:"zero,omitzero"`
	Count   int               `json:"count,string"`
	Ratio   float64           `json:"ratio,omitempty"`
	When    time.Time         `json:"when"`
	Levels  map[level]float64 `json:"levels"`
	Temp    celsius           `json:"temp"`
	Ptr     ptrMarshaler      `json:"ptr"`
	hidden  int
	Floats  []float64 `json:"floats"`
	Nums    *[]float32
	Raw     json.RawMessage `json:"raw"`
	Iface   any             `json:"iface"`
	Array   [2]float64      `json:"array"`
	NilMap  map[string]int  `json:"nil_map"`
	private struct{ A int }
}

func TestFromGoWholeFloatsStayFloats(t *testing.T) {
	cases := []struct {
		v    any
		want string
	}{
		{area{Area: 6, Unit: "cm2"}, `{"area": 6.0, "unit": "cm2"}`},
		{&area{Area: 6, Unit: "cm2"}, `{"area": 6.0, "unit": "cm2"}`},
		{[]float64{1, 2}, `[1.0, 2.0]`},
		{[]area{{Area: 1}}, `[{"area": 1.0, "unit": ""}]`},
		{map[string]float64{"a": 3}, `{"a": 3.0}`},
		{map[string]area{"k": {Area: 2}}, `{"k": {"area": 2.0, "unit": ""}}`},
		{[]any{area{Area: 4}}, `[{"area": 4.0, "unit": ""}]`},
		{map[string]any{"x": []float32{0.1, 2}}, `{"x": [0.1, 2.0]}`},
		{Dict{{"r", &area{Area: 1e20}}}, `{"r": {"area": 1e+20, "unit": ""}}`},
		{float32(0.1), `0.1`},
		{[]celsius{1}, `[{"celsius": 21.0}]`},
		{struct{ P *float64 }{P: new(float64)}, `{"P": 0.0}`},
	}
	for _, c := range cases {
		got, err := MarshalJSON(c.v)
		if err != nil {
			t.Errorf("MarshalJSON(%#v): %v", c.v, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("MarshalJSON(%#v) = %s, want %s", c.v, got, c.want)
		}
		// msgpack carries the same Python value.
		mp, err := marshalMsgpack(c.v)
		if err != nil {
			t.Errorf("msgpack(%#v): %v", c.v, err)
			continue
		}
		fromMsgpack, err := unmarshalMsgpack(mp, false)
		if err != nil {
			t.Fatal(err)
		}
		fromJSON, err := UnmarshalJSON(got)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fromMsgpack, fromJSON) {
			t.Errorf("%#v: msgpack gives %#v, JSON %#v", c.v, fromMsgpack, fromJSON)
		}
	}
}

func TestFromGoStructRules(t *testing.T) {
	when := time.Date(2024, 1, 2, 3, 4, 5, 600000000, time.UTC)
	nums := []float32{1.5}
	w := &wrapper{
		Base:   Base{ID: 7, Score: 10, Note: "base"},
		Other:  &Other{Note: "other", Tag: "t"},
		Name:   "n",
		Skip:   "skip",
		Dash:   "dash",
		Count:  3,
		When:   when,
		Levels: map[level]float64{1: 2},
		Temp:   5,
		Floats: []float64{0, 1},
		Nums:   &nums,
		Raw:    json.RawMessage(`{"n": 1.0, "i": 1}`),
		Iface:  area{Area: 9},
		Array:  [2]float64{1, 2},
		hidden: 1,
	}
	got, err := FromGo(w)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := got.(Dict)
	if !ok {
		t.Fatalf("got %T", got)
	}
	var keys []string
	for _, it := range d {
		keys = append(keys, it.Key)
	}
	// Note is ambiguous (Base.Note and Other.Note at the same depth, both
	// untagged) and is left out, as encoding/json does.
	wantKeys := []string{"id", "score", "tag", "name", "-", "count", "when", "levels", "temp", "ptr", "floats", "Nums", "raw", "iface", "array", "nil_map"}
	if !slices.Equal(keys, wantKeys) {
		t.Fatalf("keys %q\nwant %q", keys, wantKeys)
	}
	// The same names as encoding/json, which cannot tell floats apart.
	enc, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	var std map[string]any
	if err := json.Unmarshal(enc, &std); err != nil {
		t.Fatal(err)
	}
	stdKeys := make([]string, 0, len(std))
	for k := range std {
		stdKeys = append(stdKeys, k)
	}
	slices.Sort(stdKeys)
	sorted := slices.Sorted(slices.Values(keys))
	if !slices.Equal(sorted, stdKeys) {
		t.Fatalf("keys %q, encoding/json has %q", sorted, stdKeys)
	}
	want := map[string]any{
		"id":      int64(7),
		"score":   10.0,
		"tag":     "t",
		"name":    "n",
		"-":       "dash",
		"count":   "3",
		"when":    when,
		"levels":  map[string]any{"high": 2.0},
		"temp":    map[string]any{"celsius": 21.0},
		"ptr":     "ptr", // addressable through the pointer: (*ptrMarshaler).MarshalJSON
		"floats":  []any{0.0, 1.0},
		"Nums":    []any{1.5},
		"raw":     map[string]any{"n": 1.0, "i": int64(1)},
		"iface":   Dict{{"area", 9.0}, {"unit", ""}},
		"array":   []any{1.0, 2.0},
		"nil_map": nil,
	}
	for _, it := range d {
		if !reflect.DeepEqual(it.Value, want[it.Key]) {
			t.Errorf("%s = %#v, want %#v", it.Key, it.Value, want[it.Key])
		}
	}
	b, err := MarshalJSON(w)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"when": "2024-01-02T03:04:05.600000Z"`) {
		t.Errorf("time not in kombu's form: %s", b)
	}

	// Addressable (an element of a slice): the pointer method is used;
	// not addressable (a struct passed by value): it is not, as with
	// encoding/json.
	got, err = FromGo([]wrapper{{}})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := got.([]any)[0].(Dict).Get("ptr"); v != "ptr" {
		t.Errorf("ptr in a slice = %#v", v)
	}
	got, err = FromGo(wrapper{})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := got.(Dict).Get("ptr"); !reflect.DeepEqual(v, Dict{}) {
		t.Errorf("ptr by value = %#v, want {}", v)
	}
	// A nil embedded pointer hides its fields; Note stays ambiguous (the
	// choice depends on the types, not on the values).
	if _, ok := got.(Dict).Get("tag"); ok {
		t.Error("tag of a nil *Other written")
	}
	if v, ok := got.(Dict).Get("Note"); ok {
		t.Errorf("ambiguous Note written: %#v", v)
	}
}

func TestFromGoValues(t *testing.T) {
	type named string
	cases := []struct {
		v, want any
	}{
		{nil, nil},
		{uint64(math.MaxUint64), new(big.Int).SetUint64(math.MaxUint64)},
		{uint(3), int64(3)},
		{named("x"), "x"},
		{level(0), "low"},
		{map[int]bool{2: true}, map[string]any{"2": true}},
		{(*area)(nil), nil},
		{[]byte("ab"), []byte("ab")},
		{json.Number("2.0"), 2.0},
		{json.Number("2"), int64(2)},
		{[]string{"a"}, []any{"a"}},
		{&Signature{Task: "t"}, Dict{{"task", "t"}, {"args", []any{}}, {"kwargs", map[string]any{}}, {"options", map[string]any{}}, {"subtask_type", nil}, {"immutable", false}}},
		{struct {
			D Dict
		}{Dict{{"b", 1}, {"a", 2.0}}}, Dict{{"D", Dict{{"b", int64(1)}, {"a", 2.0}}}}},
	}
	for _, c := range cases {
		got, err := FromGo(c.v)
		if err != nil {
			t.Errorf("FromGo(%#v): %v", c.v, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("FromGo(%#v) = %#v, want %#v", c.v, got, c.want)
		}
	}
}

func TestFromGoErrors(t *testing.T) {
	type node struct{ Next *node }
	loop := &node{}
	loop.Next = loop
	for _, v := range []any{
		make(chan int),
		complex(1, 2),
		struct{ F func() }{},
		map[[2]int]int{{1, 2}: 3},
		loop,
		failing{},
		json.Number("x"),
	} {
		_, err := FromGo(v)
		var ee *EncodeError
		if !errors.As(err, &ee) || !errors.Is(err, ErrUnsupportedValue) {
			t.Errorf("FromGo(%T) = %v, want an *EncodeError", v, err)
		}
		if _, err := marshalMsgpack(v); !errors.Is(err, ErrUnsupportedValue) {
			t.Errorf("msgpack(%T) = %v, want ErrUnsupportedValue", v, err)
		}
	}
}

// Plain values must not pay for reflection: the encoders write them
// without calling FromGo.
func BenchmarkMarshalJSONStruct(b *testing.B) {
	v := []any{area{Area: 6, Unit: "cm2"}, map[string]any{"x": 1.5}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := MarshalJSON(v); err != nil {
			b.Fatal(err)
		}
	}
}

// Repr (argsrepr, kwargsrepr, log lines) shows a Go value as Python will
// hold it, by the same rule as the encoders.
func TestReprFollowsFromGo(t *testing.T) {
	cases := []struct {
		v    any
		want string
	}{
		{area{Area: 6, Unit: "cm2"}, "{'area': 6.0, 'unit': 'cm2'}"},
		{[]any{&area{Area: 1.5}}, "[{'area': 1.5, 'unit': ''}]"},
		{[]float64{1, 2}, "[1.0, 2.0]"},
		{map[int]float32{1: 0.1}, "{'1': 0.1}"},
		{level(1), "'high'"},
		{uint64(math.MaxUint64), "18446744073709551615"},
	}
	for _, c := range cases {
		if got := Repr(c.v); got != c.want {
			t.Errorf("Repr(%#v) = %q, want %q", c.v, got, c.want)
		}
	}
	// What Python cannot hold is still shown, as Go prints it.
	if got := Repr(make(chan int)); !strings.HasPrefix(got, "0x") {
		t.Errorf("Repr(chan) = %q", got)
	}
	if got := ArgsRepr([]any{area{Area: 6, Unit: "cm2"}, 2.0}); got != "({'area': 6.0, 'unit': 'cm2'}, 2.0)" {
		t.Errorf("ArgsRepr = %q", got)
	}
}

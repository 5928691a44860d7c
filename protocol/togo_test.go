package protocol

import (
	"errors"
	"math"
	"math/big"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

type unmarshalCounter struct{ raw string }

func (u *unmarshalCounter) UnmarshalJSON(b []byte) error {
	if string(b) == `"bad"` {
		return errors.New("bad value")
	}
	u.raw = string(b)
	return nil
}

type inner struct {
	N int `json:"n"`
}

type target struct {
	inner
	*Other
	Area  float64           `json:"area"`
	Count int               `json:"count"`
	Quote int               `json:"quote,string"`
	When  time.Time         `json:"when"`
	Tags  []string          `json:"tags"`
	Sub   *inner            `json:"sub"`
	Byte  []byte            `json:"byte"`
	Raw   unmarshalCounter  `json:"raw"`
	Addr  netip.Addr        `json:"addr"`
	Any   any               `json:"any"`
	Ints  map[int]float64   `json:"ints"`
	Deep  map[string][]int8 `json:"deep"`
	Skip  int               `json:"-"`
}

func to[T any](t *testing.T, v any) (T, error) {
	t.Helper()
	rv, err := ToGo(v, reflect.TypeFor[T]())
	if err != nil {
		var zero T
		return zero, err
	}
	out, _ := rv.Interface().(T)
	return out, nil
}

func TestToGoNumbers(t *testing.T) {
	if n, err := to[int](t, 3.0); err != nil || n != 3 {
		t.Errorf("int from 3.0 = %v, %v", n, err)
	}
	if n, err := to[int](t, int64(3)); err != nil || n != 3 {
		t.Errorf("int from 3 = %v, %v", n, err)
	}
	if n, err := to[uint8](t, 255.0); err != nil || n != 255 {
		t.Errorf("uint8 from 255.0 = %v, %v", n, err)
	}
	if n, err := to[*big.Int](t, 1e20); err != nil || n.String() != "100000000000000000000" {
		t.Errorf("*big.Int from 1e20 = %v, %v", n, err)
	}
	if f, err := to[float64](t, int64(2)); err != nil || f != 2 {
		t.Errorf("float64 from 2 = %v, %v", f, err)
	}
	if f, err := to[float64](t, math.NaN()); err != nil || !math.IsNaN(f) {
		t.Errorf("float64 from NaN = %v, %v", f, err)
	}
	if p, err := to[*int](t, 4.0); err != nil || *p != 4 {
		t.Errorf("*int from 4.0 = %v, %v", p, err)
	}
	for _, c := range []struct {
		v    any
		typ  reflect.Type
		want string
	}{
		{2.5, reflect.TypeFor[int](), "must be int, not float"},
		{math.NaN(), reflect.TypeFor[int](), "must be int, not float"},
		{math.Inf(1), reflect.TypeFor[int64](), "must be int, not float"},
		{1e19, reflect.TypeFor[int64](), "is out of range for int64"},
		{-1.0, reflect.TypeFor[uint](), "is out of range for uint"},
		{256.0, reflect.TypeFor[uint8](), "is out of range for uint8"},
		{int64(300), reflect.TypeFor[int8](), "is out of range for int8"},
		{new(big.Int).Lsh(big.NewInt(1), 70), reflect.TypeFor[int](), "is out of range for int"},
		{true, reflect.TypeFor[int](), "must be int, not bool"},
		{"3", reflect.TypeFor[int](), "must be int, not str"},
		{nil, reflect.TypeFor[int](), "must be int, not NoneType"},
		{1e300, reflect.TypeFor[float32](), "is out of range for float32"},
		{"x", reflect.TypeFor[float64](), "must be float, not str"},
		{2.5, reflect.TypeFor[*big.Int](), "must be int, not float"},
		{[]any{int64(1), 1.5}, reflect.TypeFor[[]int](), "item 1 must be int, not float"},
		{map[string]any{"a": []any{2.5}}, reflect.TypeFor[map[string][]int](), "key 'a' item 0 must be int, not float"},
	} {
		_, err := ToGo(c.v, c.typ)
		var ce *ConvertError
		if !errors.As(err, &ce) || !errors.Is(err, ErrConvert) || err.Error() != c.want {
			t.Errorf("ToGo(%#v, %s) = %v, want %q", c.v, c.typ, err, c.want)
		}
	}
}

func TestToGoContainers(t *testing.T) {
	when := time.Date(2024, 1, 2, 3, 4, 5, 600000000, time.UTC)
	v := map[string]any{
		"n": 2.0, "area": int64(6), "count": 3.0, "quote": "7", "when": "2024-01-02T03:04:05.600000+00:00",
		"tags": []any{"a"}, "sub": map[string]any{"N": int64(1)}, "byte": "xy",
		"raw": Dict{{"k", 1.5}}, "addr": "10.0.0.1", "any": []any{int64(1)},
		"ints": map[string]any{"2": int64(1)}, "deep": map[string]any{"d": []any{-1.0}},
		"tag": "t", "unknown": "ignored", "Skip": int64(9),
	}
	got, err := to[target](t, v)
	if err != nil {
		t.Fatal(err)
	}
	want := target{
		inner: inner{N: 2}, Other: &Other{Tag: "t"}, Area: 6, Count: 3, Quote: 7, When: when,
		Tags: []string{"a"}, Sub: &inner{N: 1}, Byte: []byte("xy"), Raw: unmarshalCounter{`{"k": 1.5}`},
		Addr: netip.MustParseAddr("10.0.0.1"), Any: []any{int64(1)},
		Ints: map[int]float64{2: 1}, Deep: map[string][]int8{"d": {-1}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	// FromGo and ToGo are inverse for a struct.
	back, err := FromGo(&got)
	if err != nil {
		t.Fatal(err)
	}
	again, err := to[target](t, back)
	if err != nil {
		t.Fatal(err)
	}
	want.Raw = unmarshalCounter{"{}"} // it has no MarshalJSON: an empty dict
	if !reflect.DeepEqual(again, want) {
		t.Fatalf("round trip %+v", again)
	}
	for _, c := range []struct {
		v    any
		typ  reflect.Type
		want string
	}{
		{map[string]any{"raw": "bad"}, reflect.TypeFor[target](), "key 'raw' does not fit protocol.unmarshalCounter: bad value"},
		{map[string]any{"addr": int64(1)}, reflect.TypeFor[target](), "key 'addr' must be str, not int"},
		{map[string]any{"when": "yesterday"}, reflect.TypeFor[target](), `key 'when' must be an ISO 8601 time: invalid ISO 8601 time "yesterday": expected YYYY-`},
		{map[string]any{"ints": map[string]any{"x": int64(1)}}, reflect.TypeFor[target](), "key 'ints' key 'x' is not a int"},
		{[]any{int64(1)}, reflect.TypeFor[target](), "must be dict, not list"},
		{[]any{int64(1)}, reflect.TypeFor[[2]int](), "must be a list of 2 items, not 1"},
		{"s", reflect.TypeFor[[]string](), "must be list, not str"},
		{int64(1), reflect.TypeFor[chan int](), "has unsupported type chan int"},
	} {
		_, err := ToGo(c.v, c.typ)
		if !errors.Is(err, ErrConvert) || err.Error() != c.want {
			t.Errorf("ToGo(%#v, %s) = %v, want %q", c.v, c.typ, err, c.want)
		}
	}
	// None is the nil of nillable kinds.
	if s, err := to[[]int](t, nil); err != nil || s != nil {
		t.Errorf("[]int from None = %#v, %v", s, err)
	}
	if m, err := to[map[string]int](t, nil); err != nil || m != nil {
		t.Errorf("map from None = %#v, %v", m, err)
	}
	if a, err := to[any](t, nil); err != nil || a != nil {
		t.Errorf("any from None = %#v, %v", a, err)
	}
}

func TestToGoNilBigInt(t *testing.T) {
	var nilBig *big.Int
	for _, typ := range []reflect.Type{reflect.TypeFor[int](), reflect.TypeFor[uint](), reflect.TypeFor[float64](), reflect.TypeFor[*big.Int]()} {
		rv, err := ToGo(nilBig, typ)
		if typ == reflect.TypeFor[*big.Int]() {
			if err != nil || !rv.IsNil() {
				t.Errorf("*big.Int from nil *big.Int: %v, %v", rv, err)
			}
			continue
		}
		if !errors.Is(err, ErrConvert) {
			t.Errorf("%s from nil *big.Int: %v", typ, err)
		}
	}
}

// FuzzToGo reads hostile JSON as task arguments would be: converting it to
// any of these types gives a value or a *ConvertError, never a panic, and
// what converts writes back.
func FuzzToGo(f *testing.F) {
	for _, s := range []string{`3.0`, `2.5`, `[1, 2.0, null]`, `{"area": 6, "unit": "cm2", "n": 1e400}`,
		`{"when": "2024-01-02T03:04:05Z", "ints": {"1": 2}, "deep": {"a": [1, -1.0]}, "quote": "\"7\""}`,
		`18446744073709551616`, `-1`, `"10.0.0.1"`, `{"sub": {"N": 1}, "tags": ["x", 1]}`, `[[[[]]]]`} {
		f.Add([]byte(s))
	}
	types := []reflect.Type{
		reflect.TypeFor[int](), reflect.TypeFor[uint8](), reflect.TypeFor[float32](), reflect.TypeFor[*big.Int](),
		reflect.TypeFor[[]int](), reflect.TypeFor[[2]float64](), reflect.TypeFor[map[int]string](),
		reflect.TypeFor[map[string][]int8](), reflect.TypeFor[target](), reflect.TypeFor[*target](),
		reflect.TypeFor[time.Time](), reflect.TypeFor[any](), reflect.TypeFor[[]byte](), reflect.TypeFor[netip.Addr](),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := UnmarshalJSON(data)
		if err != nil {
			return
		}
		for _, typ := range types {
			rv, err := ToGo(v, typ)
			if err != nil {
				var ce *ConvertError
				if !errors.As(err, &ce) {
					t.Fatalf("ToGo(%s, %s): %T %v", data, typ, err, err)
				}
				continue
			}
			if _, err := FromGo(rv.Interface()); err != nil {
				t.Fatalf("FromGo(ToGo(%s, %s)): %v", data, typ, err)
			}
		}
	})
}

// kombu 5.3+ writes bytes in JSON as typed objects; a []byte parameter
// takes them, other parameters see the dict as it came.
func TestToGoKombuTypedBytes(t *testing.T) {
	for _, c := range []struct {
		v    map[string]any
		want []byte
	}{
		{map[string]any{"__type__": "bytes", "__value__": "héllo"}, []byte("héllo")},
		{map[string]any{"__type__": "base64", "__value__": "AAH/"}, []byte{0, 1, 255}},
	} {
		got, err := to[[]byte](t, c.v)
		if err != nil || string(got) != string(c.want) {
			t.Errorf("%v: %q, %v; want %q", c.v, got, err, c.want)
		}
	}
	for _, v := range []map[string]any{
		{"__type__": "base64", "__value__": "not base64!"},
		{"__type__": "datetime", "__value__": "2024-01-02T03:04:05"},
		{"__type__": "bytes", "__value__": int64(1)},
		{"__type__": "bytes", "__value__": "x", "extra": true},
	} {
		if got, err := to[[]byte](t, v); err == nil {
			t.Errorf("%v: %q, want an error", v, got)
		}
	}
	if got, err := to[map[string]any](t, map[string]any{"__type__": "bytes", "__value__": "x"}); err != nil || got["__value__"] != "x" {
		t.Errorf("as a dict: %v, %v", got, err)
	}
}

package protocol

import (
	"bytes"
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"
	"time"
)

// valueEqual compares decoded values: NaN equals NaN, *big.Int by value,
// Dict like the map it stands for.
func valueEqual(a, b any) bool {
	if d, ok := a.(Dict); ok {
		a = d.Map()
	}
	if d, ok := b.(Dict); ok {
		b = d.Map()
	}
	switch x := a.(type) {
	case nil:
		return b == nil
	case float64:
		y, ok := b.(float64)
		if !ok {
			return false
		}
		if math.IsNaN(x) {
			return math.IsNaN(y)
		}
		return x == y && math.Signbit(x) == math.Signbit(y)
	case *big.Int:
		y, ok := b.(*big.Int)
		return ok && x.Cmp(y) == 0
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !valueEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !valueEqual(xv, yv) {
				return false
			}
		}
		return true
	case []byte:
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	default:
		return a == b
	}
}

func bigInt(s string) *big.Int {
	b, ok := new(big.Int).SetString(s, 10)
	if !ok {
		panic(s)
	}
	return b
}

// Samples written by Python 3 json.dumps (Celery's JSON), pasted verbatim.
var pythonFloatSamples = []struct {
	f    float64
	text string
}{
	{1.0, "1.0"},
	{0.1, "0.1"},
	{1e16, "1e+16"},
	{1e15, "1000000000000000.0"},
	{1.5e-7, "1.5e-07"},
	{1e-5, "1e-05"},
	{0.0001, "0.0001"},
	{123456789012345678.0, "1.2345678901234568e+17"},
	{math.Copysign(0, -1), "-0.0"},
	{1e22, "1e+22"},
	{1e100, "1e+100"},
	{5e-324, "5e-324"},
	{1.7976931348623157e308, "1.7976931348623157e+308"},
	{2.5, "2.5"},
	{100.0, "100.0"},
	{0.30000000000000004, "0.30000000000000004"},
	{1234567890123456.7, "1234567890123456.8"},
	{math.NaN(), "NaN"},
	{math.Inf(1), "Infinity"},
	{math.Inf(-1), "-Infinity"},
}

func TestMarshalJSONFloatsLikePython(t *testing.T) {
	for _, c := range pythonFloatSamples {
		got, err := MarshalJSON(c.f)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.text {
			t.Errorf("MarshalJSON(%v) = %s, Python writes %s", c.f, got, c.text)
		}
		back, err := UnmarshalJSON([]byte(c.text))
		if err != nil {
			t.Fatalf("UnmarshalJSON(%s): %v", c.text, err)
		}
		if !valueEqual(back, c.f) {
			t.Errorf("UnmarshalJSON(%s) = %#v, want %v", c.text, back, c.f)
		}
	}
}

func TestMarshalJSONFloat32(t *testing.T) {
	got, err := MarshalJSON(float32(0.1))
	if err != nil || string(got) != "0.1" {
		t.Fatalf("float32(0.1) = %s, %v", got, err)
	}
}

func TestJSONIntegersLikePython(t *testing.T) {
	cases := []struct {
		text string
		v    any
	}{
		{"0", int64(0)},
		{"-0", int64(0)},
		{"42", int64(42)},
		{"-5", int64(-5)},
		{"999999999999999999", int64(999999999999999999)},
		{"9223372036854775807", int64(math.MaxInt64)},
		{"-9223372036854775808", int64(math.MinInt64)},
		{"9223372036854775808", bigInt("9223372036854775808")},
		{"1180591620717411303424", bigInt("1180591620717411303424")},
		{"-1180591620717411303424", bigInt("-1180591620717411303424")},
	}
	for _, c := range cases {
		v, err := UnmarshalJSON([]byte(c.text))
		if err != nil {
			t.Fatalf("%s: %v", c.text, err)
		}
		if !valueEqual(v, c.v) {
			t.Errorf("UnmarshalJSON(%s) = %#v, want %#v", c.text, v, c.v)
		}
		out, err := MarshalJSON(v)
		if err != nil {
			t.Fatal(err)
		}
		want := c.text
		if want == "-0" {
			want = "0"
		}
		if string(out) != want {
			t.Errorf("MarshalJSON(%v) = %s, want %s", v, out, want)
		}
	}
}

func TestMarshalJSONStringLikePython(t *testing.T) {
	in := "h\u00e9llo \u2603 \U0001d11e \x00\x1f\x7f \" \\ / \n\r\t\b\f <>&"
	// json.dumps(in)
	const py = `"h\u00e9llo \u2603 \ud834\udd1e \u0000\u001f\u007f \" \\ / \n\r\t\b\f <>&"`
	got, err := MarshalJSON(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != py {
		t.Fatalf("got  %s\nwant %s", got, py)
	}
	back, err := UnmarshalJSON([]byte(py))
	if err != nil {
		t.Fatal(err)
	}
	if back != in {
		t.Fatalf("round trip: %q", back)
	}
}

func TestMarshalJSONContainers(t *testing.T) {
	v := map[string]any{"b": []any{int64(1), 2.5, nil, true, false, map[string]any{}}, "a": map[string]any{"x": []any{}}}
	got, err := MarshalJSON(v)
	if err != nil {
		t.Fatal(err)
	}
	// Keys of a Go map are sorted.
	const want = `{"a": {"x": []}, "b": [1, 2.5, null, true, false, {}]}`
	if string(got) != want {
		t.Fatalf("got %s", got)
	}
	// A Dict keeps its order: json.dumps({"b": ..., "a": ...}).
	d := Dict{{"b", []any{1, 2.5, nil, true, false, Dict{}}}, {"a", Dict{{"x", []any{}}}}}
	got, err = MarshalJSON(d)
	if err != nil {
		t.Fatal(err)
	}
	const py = `{"b": [1, 2.5, null, true, false, {}], "a": {"x": []}}`
	if string(got) != py {
		t.Fatalf("got %s", got)
	}
}

type point struct {
	X     int     `json:"x"`
	Y     float64 `json:"y"`
	Label string  `json:"label,omitempty"`
	Big   uint64  `json:"big"`
}

func TestMarshalJSONGoTypes(t *testing.T) {
	ts := time.Date(2024, 1, 2, 3, 4, 5, 678901999, time.UTC)
	cases := []struct {
		v    any
		want string
	}{
		{int8(-3), "-3"},
		{uint16(7), "7"},
		{uint64(math.MaxUint64), "18446744073709551615"},
		{[]int{1, 2}, "[1, 2]"},
		{[2]string{"a", "é"}, `["a", "\u00e9"]`},
		{map[string]int{"z": 1, "a": 2}, `{"a": 2, "z": 1}`},
		{map[int]string{10: "x", 2: "y"}, `{"10": "x", "2": "y"}`},
		{[]float64{1, 0.5}, "[1.0, 0.5]"},
		{ts, `"2024-01-02T03:04:05.678901Z"`},
		{time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), `"2024-01-02T03:04:05Z"`},
		{time.Date(2024, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 2*3600)), `"2024-01-02T03:04:05+02:00"`},
		// A struct is a dict in field order, and a float64 field stays a
		// float even when it is whole.
		{point{X: 1, Y: 2, Big: 1 << 62}, `{"x": 1, "y": 2.0, "big": 4611686018427387904}`},
		{&point{X: 1, Y: 2.5, Label: "<a&b>"}, `{"x": 1, "y": 2.5, "label": "<a&b>", "big": 0}`},
		{(*point)(nil), "null"},
		{[]any(nil), "[]"},
		{[]int(nil), "null"},
		{bigInt("-1180591620717411303424"), "-1180591620717411303424"},
		{NewException("KeyError", "boom"), `{"exc_type": "KeyError", "exc_message": ["boom"], "exc_module": "builtins"}`},
		{Signature{Task: "tasks.add", Args: []any{1}}, `{"task": "tasks.add", "args": [1], "kwargs": {}, "options": {}, "subtask_type": null, "immutable": false}`},
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
	}
}

func TestMarshalJSONRejects(t *testing.T) {
	for _, v := range []any{
		[]byte("x"),
		[]any{"ok", []byte{0}},
		map[string]any{"f": func() {}},
		make(chan int),
		map[float64]int{1.5: 1},
	} {
		_, err := MarshalJSON(v)
		var ee *EncodeError
		if !errors.Is(err, ErrUnsupportedValue) || !errors.As(err, &ee) {
			t.Errorf("MarshalJSON(%T) err = %v, want an *EncodeError", v, err)
		}
	}
	// Python refuses integers of more than 4300 digits.
	huge := new(big.Int).Exp(big.NewInt(10), big.NewInt(MaxIntDigits), nil) // 4301 digits
	if _, err := MarshalJSON(huge); !errors.Is(err, ErrUnsupportedValue) {
		t.Errorf("huge int: %v", err)
	}
	if _, err := MarshalJSON(new(big.Int).Neg(new(big.Int).Sub(huge, big.NewInt(1)))); err != nil {
		t.Errorf("-(10**4300-1): %v", err)
	}
	// A cyclic value is an error, not a stack overflow.
	cyc := []any{nil}
	cyc[0] = cyc
	if _, err := MarshalJSON(cyc); !errors.Is(err, ErrUnsupportedValue) {
		t.Errorf("cyclic: %v", err)
	}
}

func TestUnmarshalJSONLikePython(t *testing.T) {
	cases := []struct {
		in   string
		want any
	}{
		{` {"a": 1, "a": 2} `, map[string]any{"a": int64(2)}},
		{"\t[1,2.0,\n-3e2]\r\n", []any{int64(1), 2.0, -300.0}},
		{`"\ud834\udd1e"`, "\U0001d11e"},
		{`"\ud834x"`, "\ufffdx"},
		{`"\udd1e"`, "\ufffd"},
		{`"\u00e9\/"`, "é/"},
		{`"héllo"`, "héllo"},
		{`[NaN, Infinity, -Infinity]`, []any{math.NaN(), math.Inf(1), math.Inf(-1)}},
		{`1e400`, math.Inf(1)},
		{`-1e400`, math.Inf(-1)},
		{`1E2`, 100.0},
		{`[]`, []any{}},
		{`{}`, map[string]any{}},
		{`null`, nil},
		{`[true, false]`, []any{true, false}},
	}
	for _, c := range cases {
		got, err := UnmarshalJSON([]byte(c.in))
		if err != nil {
			t.Errorf("UnmarshalJSON(%q): %v", c.in, err)
			continue
		}
		if !valueEqual(got, c.want) {
			t.Errorf("UnmarshalJSON(%q) = %#v, want %#v", c.in, got, c.want)
		}
	}
}

func TestUnmarshalJSONErrors(t *testing.T) {
	deep := strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1)
	okDeep := strings.Repeat("[", MaxJSONDepth) + strings.Repeat("]", MaxJSONDepth)
	if _, err := UnmarshalJSON([]byte(okDeep)); err != nil {
		t.Fatalf("depth %d: %v", MaxJSONDepth, err)
	}
	for _, in := range []string{
		"", " ", "{not json", "[1,]", "[1 2]", `{"a" 1}`, `{a: 1}`, `{"a": 1,}`,
		"01", "1.", ".5", "-", "+1", "1e", "-NaN", "nan", "infinity", "True",
		"[1] x", `"abc`, `"\x"`, `"\u12"`, "\"a\nb\"", "\"\xff\"", "\"\xed\xa0\x80\"",
		"\xef\xbb\xbf[]", deep, strings.Repeat("1", MaxIntDigits+1), strings.Repeat(`{"a":`, 100000), `"\`,
	} {
		v, err := UnmarshalJSON([]byte(in))
		if err == nil {
			t.Errorf("UnmarshalJSON(%.40q) = %#v, want an error", in, v)
			continue
		}
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("UnmarshalJSON(%.40q) error %T is not *SyntaxError", in, err)
		}
	}
}

// TestJSONVectorsReencode re-encodes every JSON body Celery wrote. With
// the key order of the input kept (Dict), the bytes are identical to
// Python's. Through UnmarshalJSON (plain maps, written with sorted keys) the
// bytes are identical only where Python's insertion order happens to be
// sorted; the embed object {"callbacks", "errbacks", "chain", "chord"} is
// not, so for those bodies the decoded values are compared instead.
func TestJSONVectorsReencode(t *testing.T) {
	n := 0
	for _, v := range loadVectors(t) {
		if v.contentType() != ContentTypeJSON {
			continue
		}
		if _, ok := v.Headers["compression"]; ok {
			continue
		}
		n++
		od, err := unmarshalJSONOrdered(v.Body)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		out, err := MarshalJSON(od)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if !bytes.Equal(out, v.Body) {
			t.Errorf("%s: ordered re-encoding differs\n got %s\nwant %s", v.Name, out, v.Body)
		}
		dv, err := UnmarshalJSON(v.Body)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		out, err = MarshalJSON(dv)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if !bytes.Equal(out, v.Body) {
			back, err := UnmarshalJSON(out)
			if err != nil || !valueEqual(back, dv) {
				t.Errorf("%s: map re-encoding changed the value: %s", v.Name, out)
			}
		}
		// The sidecar holds the decoding Python made.
		want, err := UnmarshalJSON(v.BodyDecoded)
		if err != nil {
			t.Fatal(err)
		}
		if !valueEqual(dv, want) {
			t.Errorf("%s: decoded %#v, Python decoded %#v", v.Name, dv, want)
		}
	}
	if n < 20 {
		t.Fatalf("only %d JSON vectors found", n)
	}
}

func FuzzUnmarshalJSON(f *testing.F) {
	for _, s := range []string{
		`[[2, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`,
		`{"a": [1, 2.5e-7, -0.0, NaN, Infinity, -Infinity, 123456789012345678901234567890]}`,
		`"\ud834\udd1e\u00e9\n"`, `"\ud834"`, "[1,]", "\xef\xbb\xbf1", `{"a": 1, "a": 2}`,
	} {
		f.Add([]byte(s))
	}
	if vs, err := loadVectorsNoFail(); err == nil {
		for _, v := range vs {
			f.Add(v)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := UnmarshalJSON(data)
		if err != nil {
			return
		}
		out, err := MarshalJSON(v)
		if err != nil {
			t.Fatalf("cannot re-encode %#v: %v", v, err)
		}
		back, err := UnmarshalJSON(out)
		if err != nil {
			t.Fatalf("cannot decode own output %q: %v", out, err)
		}
		if !valueEqual(back, v) {
			t.Fatalf("round trip changed %#v into %#v", v, back)
		}
		out2, err := MarshalJSON(back)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("encoding not stable: %q vs %q", out, out2)
		}
	})
}

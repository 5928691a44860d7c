package pickle_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/big"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/protocol/pickle"
)

func bigInt(s string) *big.Int {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		panic(s)
	}
	return n
}

// cases pairs a Go value with the Python expression of the same value and
// the value Unmarshal gives back.
var cases = []struct {
	name string
	go_  any
	py   string
	back any
}{
	{"none", nil, "None", nil},
	{"true", true, "True", true},
	{"false", false, "False", false},
	{"zero", 0, "0", int64(0)},
	{"byte", int64(255), "255", int64(255)},
	{"int2", 256, "256", int64(256)},
	{"int2max", 65535, "65535", int64(65535)},
	{"int4", 65536, "65536", int64(65536)},
	{"neg1", -1, "-1", int64(-1)},
	{"minint32", int64(math.MinInt32), "-2147483648", int64(math.MinInt32)},
	{"maxint32", int64(math.MaxInt32), "2147483647", int64(math.MaxInt32)},
	{"long1", int64(math.MaxInt32) + 1, "2147483648", int64(math.MaxInt32) + 1},
	{"long1neg", int64(math.MinInt32) - 1, "-2147483649", int64(math.MinInt32) - 1},
	{"maxint64", int64(math.MaxInt64), "9223372036854775807", int64(math.MaxInt64)},
	{"minint64", int64(math.MinInt64), "-9223372036854775808", int64(math.MinInt64)},
	{"uint64", uint64(math.MaxUint64), "18446744073709551615", bigInt("18446744073709551615")},
	{"negpow", bigInt("-340282366920938463463374607431768211456"), "-2**128", bigInt("-340282366920938463463374607431768211456")},
	{"neg128", int64(-128), "-128", int64(-128)},
	{"negpow63", bigInt("-9223372036854775809"), "-2**63-1", bigInt("-9223372036854775809")},
	{"huge", new(big.Int).Exp(big.NewInt(7), big.NewInt(1000), nil), "7**1000", new(big.Int).Exp(big.NewInt(7), big.NewInt(1000), nil)},
	{"float", 1.5, "1.5", 1.5},
	{"floatneg0", math.Copysign(0, -1), "-0.0", math.Copysign(0, -1)},
	{"inf", math.Inf(1), "float('inf')", math.Inf(1)},
	{"float32", float32(0.1), "float(__import__('numpy').float32(0.1)) if False else 0.10000000149011612", 0.10000000149011612},
	{"str", "héllo ☃ 🎉", "'héllo ☃ 🎉'", "héllo ☃ 🎉"},
	{"emptystr", "", "''", ""},
	{"str255", strings.Repeat("x", 255), "'x'*255", strings.Repeat("x", 255)},
	{"str256", strings.Repeat("x", 256), "'x'*256", strings.Repeat("x", 256)},
	{"bytes", []byte{0, 1, 0xff}, "b'\\x00\\x01\\xff'", []byte{0, 1, 0xff}},
	{"emptybytes", []byte{}, "b''", []byte{}},
	{"bytes300", bytes.Repeat([]byte{7}, 300), "b'\\x07'*300", bytes.Repeat([]byte{7}, 300)},
	{"emptylist", []any{}, "[]", []any{}},
	{"list1", []any{int64(1)}, "[1]", []any{int64(1)}},
	{"list", []any{int64(1), "a", nil, 2.5}, "[1, 'a', None, 2.5]", []any{int64(1), "a", nil, 2.5}},
	{"list1001", make([]any, 1001), "[None]*1001", make([]any, 1001)},
	{"emptytuple", pickle.Tuple{}, "()", []any{}},
	{"tuple1", pickle.Tuple{"a"}, "('a',)", []any{"a"}},
	{"tuple3", pickle.Tuple{int64(1), int64(2), int64(3)}, "(1, 2, 3)", []any{int64(1), int64(2), int64(3)}},
	{"tuple4", pickle.Tuple{int64(1), int64(2), int64(3), int64(4)}, "(1, 2, 3, 4)", []any{int64(1), int64(2), int64(3), int64(4)}},
	{"emptydict", map[string]any{}, "{}", map[string]any{}},
	{"dict1", map[string]any{"a": int64(1)}, "{'a': 1}", map[string]any{"a": int64(1)}},
	{"dictsorted", map[string]any{"b": int64(2), "a": []any{true}}, "{'a': [True], 'b': 2}", map[string]any{"b": int64(2), "a": []any{true}}},
	{"dictordered", protocol.Dict{{Key: "z", Value: nil}, {Key: "y", Value: "v"}}, "{'z': None, 'y': 'v'}", map[string]any{"z": nil, "y": "v"}},
	{"nested", []any{map[string]any{"k": pickle.Tuple{[]any{}, "x"}}}, "[{'k': ([], 'x')}]", []any{map[string]any{"k": []any{[]any{}, "x"}}}},
	{"exception", protocol.NewException("KeyError", "missing"),
		"{'exc_type': 'KeyError', 'exc_message': ('missing',), 'exc_module': 'builtins'}",
		map[string]any{"exc_type": "KeyError", "exc_message": []any{"missing"}, "exc_module": "builtins"}},
	{"big", []any{strings.Repeat("a", 70000), int64(1)}, "['a'*70000, 1]", []any{strings.Repeat("a", 70000), int64(1)}},
	{"manyframes", func() []any {
		l := make([]any, 3000)
		for i := range l {
			l[i] = strings.Repeat(fmt.Sprintf("%04d", i), 25)
		}
		return l
	}(), "[('%04d' % i) * 25 for i in range(3000)]", nil},
	{"struct", struct {
		A int    `json:"a"`
		B string `json:"b"`
	}{1, "x"}, "{'a': 1, 'b': 'x'}", map[string]any{"a": int64(1), "b": "x"}},
}

// pythonPickles returns pickle.dumps(expr, protocol=5) of every case, from
// the Python of the test environment.
func pythonPickles(t *testing.T) map[string][]byte {
	t.Helper()
	var script strings.Builder
	script.WriteString("import pickle\n")
	for _, c := range cases {
		script.WriteString("print(" + testenv.PyQuote(c.name) + ", pickle.dumps(" + c.py + ", protocol=5).hex())\n")
	}
	out, err := exec.Command(testenv.Python(), "-c", script.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	got := map[string][]byte{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, hx, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("python printed %q", line)
		}
		b, err := hex.DecodeString(hx)
		if err != nil {
			t.Fatal(err)
		}
		got[name] = b
	}
	return got
}

func TestMarshalLikePython(t *testing.T) {
	py := pythonPickles(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := pickle.Marshal(c.go_)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if !bytes.Equal(b, py[c.name]) {
				t.Fatalf("Marshal(%s):\n go %x\n py %x", c.name, short(b), short(py[c.name]))
			}
		})
	}
}

func TestUnmarshalPythonPickles(t *testing.T) {
	py := pythonPickles(t)
	for _, c := range cases {
		if c.back == nil && c.go_ != nil {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			v, err := pickle.Unmarshal(py[c.name])
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !equal(v, c.back) {
				t.Fatalf("Unmarshal(%s) = %#v, want %#v", c.name, v, c.back)
			}
		})
	}
}

// TestUnmarshalOtherProtocols reads the same values pickled with every
// protocol Python has, and with memo references (shared objects).
func TestUnmarshalOtherProtocols(t *testing.T) {
	script := `
import pickle
s = 'shared'
l = [1, 2]
v = {'a': [s, s, l, l, (l, s)], 'i': -2**70, 'f': 0.25, 'n': None, 't': True, 1: 'one', None: 0, 2.5: 'x', False: 'f', 'u': '\u00e9\u2603'}
for p in range(0, 6):
    print(pickle.dumps(v, protocol=p).hex())
`
	out, err := exec.Command(testenv.Python(), "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	want := map[string]any{
		"a": []any{"shared", "shared", []any{int64(1), int64(2)}, []any{int64(1), int64(2)}, []any{[]any{int64(1), int64(2)}, "shared"}},
		"i": bigInt("-1180591620717411303424"), "f": 0.25, "n": nil, "t": true,
		"1": "one", "null": int64(0), "2.5": "x", "false": "f", "u": "é☃",
	}
	for p, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		b, _ := hex.DecodeString(line)
		v, err := pickle.Unmarshal(b)
		if err != nil {
			t.Fatalf("protocol %d: %v", p, err)
		}
		if !equal(v, want) {
			t.Fatalf("protocol %d: %#v", p, v)
		}
	}
}

// TestUnmarshalRefusesCode feeds pickles that would import or call
// something in Python: each must fail with ErrForbidden, never run.
func TestUnmarshalRefusesCode(t *testing.T) {
	script := `
import pickle, os, datetime, collections, decimal
class Evil:
    def __reduce__(self):
        return (os.system, ('touch /nonexistent/pwned',))
for v in [Evil(), datetime.datetime(2024, 1, 2), {'x': {1, 2}}, [frozenset()], bytearray(b'x'), collections.OrderedDict(a=1), decimal.Decimal('1.5'), ValueError('x'), [{'ok': 1}, Evil()]]:
    for p in (0, 2, 5):
        print(pickle.dumps(v, protocol=p).hex())
`
	out, err := exec.Command(testenv.Python(), "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		b, _ := hex.DecodeString(line)
		v, err := pickle.Unmarshal(b)
		if !errors.Is(err, pickle.ErrForbidden) || !errors.Is(err, pickle.ErrInvalid) {
			t.Fatalf("Unmarshal(%x) = %#v, %v; want ErrForbidden", short(b), v, err)
		}
	}
	// A hand-made GLOBAL: the error names the opcode.
	_, err = pickle.Unmarshal([]byte("cos\nsystem\n(S'id'\ntR."))
	if !errors.Is(err, pickle.ErrForbidden) || !strings.Contains(err.Error(), "GLOBAL") {
		t.Fatalf("GLOBAL: %v", err)
	}
}

func TestUnmarshalMalformed(t *testing.T) {
	for name, in := range map[string][]byte{
		"empty":         {},
		"nostop":        {0x80, 5, 'N'},
		"twovalues":     {0x80, 5, 'N', 'N', '.'},
		"underflow":     {0x80, 5, 'a', '.'},
		"appendtoint":   {0x80, 5, 'K', 1, 'K', 2, 'a', '.'},
		"truncstr":      {0x80, 5, 0x8c, 10, 'a', '.'},
		"hugestr":       {0x80, 5, 0x8d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '.'},
		"badget":        {0x80, 5, 'h', 3, '.'},
		"selfref":       {0x80, 5, ']', 0x94, 'h', 0, 'a', '.'},
		"listkey":       {0x80, 5, '}', ']', 'N', 's', '.'},
		"badutf8":       {0x80, 5, 0x8c, 1, 0xff, '.'},
		"openmark":      {0x80, 5, '(', 'N', '.'},
		"proto9":        {0x80, 9, 'N', '.'},
		"hugelong":      append([]byte{0x80, 5, 0x8b, 0, 0, 1, 0}, make([]byte, 65536)...),
		"negativelong4": {0x80, 5, 0x8b, 0xff, 0xff, 0xff, 0xff, '.'},
	} {
		t.Run(name, func(t *testing.T) {
			v, err := pickle.Unmarshal(in)
			if !errors.Is(err, pickle.ErrInvalid) {
				t.Fatalf("Unmarshal = %#v, %v; want ErrInvalid", v, err)
			}
		})
	}
}

// TestSharedContainersStaySmall: memo references to one list nested many
// times are converted once, not once per path (no exponential blow-up).
func TestSharedContainersStaySmall(t *testing.T) {
	b := []byte{0x80, 5, ']', 0x94, '0'} // memo 0: []
	for i := range 60 {
		// [m_i, m_i] -> memo i+1
		b = append(b, 'h', byte(i), 'h', byte(i), 0x86, 0x94, '0')
	}
	b = append(b, 'h', 60, '.')
	if _, err := pickle.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
}

func TestMarshalRejects(t *testing.T) {
	for name, v := range map[string]any{
		"badutf8": "\xff",
		"chan":    make(chan int),
		"func":    func() {},
	} {
		if _, err := pickle.Marshal(v); !errors.Is(err, pickle.ErrUnsupported) {
			t.Errorf("%s: err = %v, want ErrUnsupported", name, err)
		}
	}
	cyc := []any{nil}
	cyc[0] = cyc
	if _, err := pickle.Marshal(cyc); !errors.Is(err, pickle.ErrUnsupported) {
		t.Errorf("cyclic: err = %v", err)
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, c := range cases {
		if b, err := pickle.Marshal(c.go_); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("cos\nsystem\n(S'id'\ntR."))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := pickle.Unmarshal(data)
		if err != nil {
			if !errors.Is(err, pickle.ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		// What was read can be written and read back the same.
		b, err := pickle.Marshal(v)
		if err != nil {
			return // e.g. a str Python can hold and Go cannot write back
		}
		w, err := pickle.Unmarshal(b)
		if err != nil || !equal(v, w) {
			t.Fatalf("round trip of %#v: %#v, %v", v, w, err)
		}
	})
}

func short(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

func equal(a, b any) bool {
	switch x := a.(type) {
	case *big.Int:
		y, ok := b.(*big.Int)
		return ok && x.Cmp(y) == 0
	case float64:
		y, ok := b.(float64)
		return ok && (x == y && math.Signbit(x) == math.Signbit(y) || math.IsNaN(x) && math.IsNaN(y))
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !equal(v, w) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

// TestCalls: a Call is written as Python writes an object's reduction,
// Python loads it, and it reads back only when its name is allowed.
func TestCalls(t *testing.T) {
	v := []any{pickle.Call{Module: "datetime", Name: "timedelta", Args: pickle.Tuple{int64(1), int64(2), int64(3)}}, "x"}
	b, err := pickle.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(testenv.Python(), "-c",
		"import pickle,sys; print(repr(pickle.loads(bytes.fromhex(sys.argv[1]))))", hex.EncodeToString(b)).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "[datetime.timedelta(days=1, seconds=2, microseconds=3), 'x']" {
		t.Fatalf("python loads: %v %s", err, out)
	}
	if _, err := pickle.Unmarshal(b); !errors.Is(err, pickle.ErrForbidden) {
		t.Fatalf("Unmarshal without Globals: %v", err)
	}
	if _, err := (pickle.UnmarshalOptions{Globals: []string{"datetime.date"}}).Unmarshal(b); !errors.Is(err, pickle.ErrForbidden) {
		t.Fatalf("Unmarshal with another global: %v", err)
	}
	got, err := pickle.UnmarshalOptions{Globals: []string{"datetime.timedelta"}}.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{pickle.Call{Module: "datetime", Name: "timedelta", Args: pickle.Tuple{int64(1), int64(2), int64(3)}}, "x"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v", got)
	}
	// A REDUCE whose callable is not an allowed global is refused, even
	// with Globals set.
	if _, err := (pickle.UnmarshalOptions{Globals: []string{"datetime.timedelta"}}).Unmarshal([]byte("cos\nsystem\n(S'id'\ntR.")); !errors.Is(err, pickle.ErrForbidden) {
		t.Fatalf("os.system: %v", err)
	}
}

package protocol

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// Expected texts come from Celery 5.2.6's saferepr(value, 1024) and
// Python's repr().
func TestReprLikeCelery(t *testing.T) {
	nums := make([]any, 600)
	for i := range nums {
		nums[i] = int64(i)
	}
	var numsWant strings.Builder
	numsWant.WriteString("(")
	for i := 0; i < 226; i++ {
		numsWant.WriteString(itoa(i) + ", ")
	}
	numsWant.WriteString("226..., ...)")
	cases := []struct {
		args []any
		want string
	}{
		{[]any{int64(2), int64(2)}, "(2, 2)"},
		{[]any{int64(2)}, "(2,)"},
		{[]any{}, "()"},
		{nil, "()"},
		{[]any{"héllo", []byte{0, 1, 0xff}}, "('héllo', b'0001ff')"},
		{[]any{"it's", nil, true, 1.5, 1.0, math.NaN(), bigInt("1180591620717411303424")}, `('it\'s', None, True, 1.5, 1.0, nan, 1180591620717411303424)`},
		{[]any{int64(1), []any{int64(2), []any{int64(3), []any{int64(4)}}}}, "(1, [2, [3, [...]]])"},
		{[]any{map[string]any{"a": map[string]any{"b": map[string]any{"c": map[string]any{"d": int64(1)}}}}}, "({'a': {'b': {...}}},)"},
		{[]any{strings.Repeat("x", 2000)}, "('" + strings.Repeat("x", 1023) + "...', ..."},
		{nums, numsWant.String()},
		{[]any{strings.Repeat("a b c ", 300)}, "('" + strings.Repeat("a b c ", 170) + "a...', ..."},
		{[]any{[]byte("abc")}, "(b'abc',)"},
		{[]any{[]any{int64(1), int64(2)}, map[string]any{"k": "v"}}, "([1, 2], {'k': 'v'})"},
	}
	for _, c := range cases {
		if got := ArgsRepr(c.args); got != c.want {
			t.Errorf("ArgsRepr(%.60v)\n got %.200q\nwant %.200q", c.args, got, c.want)
		}
	}
	if got := KwargsRepr(map[string]any{"y": int64(3)}); got != "{'y': 3}" {
		t.Errorf("KwargsRepr = %q", got)
	}
	if got := KwargsRepr(nil); got != "{}" {
		t.Errorf("KwargsRepr(nil) = %q", got)
	}
	if got := Repr(Dict{{"b", 1}, {"a", []any{}}}); got != "{'b': 1, 'a': []}" {
		t.Errorf("Repr(Dict) = %q", got)
	}
	if got := Repr(int64(4)); got != "4" {
		t.Errorf("Repr(4) = %q", got)
	}
}

func itoa(i int) string { return Repr(int64(i)) }

func TestExceptionRepr(t *testing.T) {
	cases := []struct {
		e    *Exception
		want string
	}{
		{NewException("KeyError", "boom"), "KeyError('boom')"},
		{NewException("ValueError", "boom", int64(42)), "ValueError('boom', 42)"},
		{NewException("ValueError", "it's", `a"b`, "\n\x00é☃\U0001d11e\u00a0"), `ValueError("it's", 'a"b', '\n\x00é☃𝄞\xa0')`},
		{NewException("RuntimeError"), "RuntimeError()"},
		{&Exception{Type: "TimeLimitExceeded", Args: []any{1.0}}, "TimeLimitExceeded(1.0)"},
		{NewException("E", []byte("a'\x00"), nil, false, []any{int64(1)}, map[string]any{"k": 2.5}), `E(b"a'\x00", None, False, [1], {'k': 2.5})`},
	}
	for _, c := range cases {
		if got := c.e.Error(); got != c.want {
			t.Errorf("got %s, want %s", got, c.want)
		}
	}
}

func TestExceptionFromValue(t *testing.T) {
	v, err := UnmarshalJSON([]byte(`{"exc_type": "ValueError", "exc_message": ["boom", 42], "exc_module": "builtins"}`))
	if err != nil {
		t.Fatal(err)
	}
	e, err := ExceptionFromValue(v)
	if err != nil {
		t.Fatal(err)
	}
	if e.Error() != "ValueError('boom', 42)" || e.Module != "builtins" {
		t.Errorf("%+v", e)
	}
	out, _ := MarshalJSON(e)
	if string(out) != `{"exc_type": "ValueError", "exc_message": ["boom", 42], "exc_module": "builtins"}` {
		t.Errorf("%s", out)
	}
	e, err = ExceptionFromValue(Dict{{"exc_type", "Custom"}, {"exc_message", "single"}, {"exc_module", nil}})
	if err != nil || e.Module != "" || len(e.Args) != 1 || e.Args[0] != "single" {
		t.Errorf("%+v %v", e, err)
	}
	e, err = ExceptionFromValue(map[string]any{"exc_type": "X", "exc_message": nil})
	if err != nil || e.Args == nil || len(e.Args) != 0 {
		t.Errorf("%+v %v", e, err)
	}
	for _, bad := range []any{nil, "boom", []any{}, map[string]any{}, map[string]any{"exc_type": 1},
		map[string]any{"exc_type": "X", "exc_module": 5}} {
		if _, err := ExceptionFromValue(bad); !errors.Is(err, ErrNotException) {
			t.Errorf("ExceptionFromValue(%#v) = %v", bad, err)
		}
	}
}

func TestExceptionIsAs(t *testing.T) {
	var err error = NewException("KeyError", "boom")
	wrapped := errors.Join(errors.New("context"), err)
	if !errors.Is(wrapped, &Exception{Type: "KeyError"}) || !errors.Is(wrapped, &Exception{Type: "KeyError", Module: "builtins"}) {
		t.Error("Is by type failed")
	}
	if errors.Is(wrapped, &Exception{Type: "ValueError"}) || errors.Is(wrapped, &Exception{Type: "KeyError", Module: "x"}) {
		t.Error("Is matched another type")
	}
	var e *Exception
	if !errors.As(wrapped, &e) || e.Args[0] != "boom" {
		t.Error("As failed")
	}
	var pe PythonError
	if !errors.As(wrapped, &pe) || pe.PythonException() != e {
		t.Error("PythonError As failed")
	}
}

func TestTimes(t *testing.T) {
	ts := time.Date(2026, 11, 24, 2, 31, 21, 13565999, time.UTC)
	if got := FormatTime(ts); got != "2026-11-24T02:31:21.013565+00:00" {
		t.Errorf("FormatTime = %s", got)
	}
	if got := FormatTime(time.Date(2030, 1, 1, 14, 0, 0, 0, time.FixedZone("", 2*3600))); got != "2030-01-01T12:00:00+00:00" {
		t.Errorf("FormatTime = %s", got)
	}
	if got := FormatDateDone(ts); got != "2026-11-24T02:31:21.013565" {
		t.Errorf("FormatDateDone = %s", got)
	}
	if got := FormatDateDone(time.Date(2026, 1, 2, 3, 4, 5, 999, time.UTC)); got != "2026-01-02T03:04:05" {
		t.Errorf("FormatDateDone = %s", got)
	}
	utc := func(y, mo, d, h, mi, s, ns int) time.Time {
		return time.Date(y, time.Month(mo), d, h, mi, s, ns, time.UTC)
	}
	cases := []struct {
		in   string
		want time.Time
	}{
		{"2026-11-24T02:31:21.013565+00:00", utc(2026, 11, 24, 2, 31, 21, 13565000)},
		{"2024-01-02T03:04:05.678901Z", utc(2024, 1, 2, 3, 4, 5, 678901000)},
		{"2024-01-02T03:04:05.123456789Z", utc(2024, 1, 2, 3, 4, 5, 123456000)},
		{"2024-01-02T03:04:05.5", utc(2024, 1, 2, 3, 4, 5, 500000000)},
		{"2024-01-02T03:04:05", utc(2024, 1, 2, 3, 4, 5, 0)},
		{"2024-01-02 03:04", utc(2024, 1, 2, 3, 4, 0, 0)},
		{"2024-01-02", utc(2024, 1, 2, 0, 0, 0, 0)},
		{"2024-01-02T03:04:05+02:00", utc(2024, 1, 2, 1, 4, 5, 0)},
		{"2024-01-02T03:04:05-0130", utc(2024, 1, 2, 4, 34, 5, 0)},
		{"2024-01-02T03:04:05+05", utc(2024, 1, 1, 22, 4, 5, 0)},
	}
	for _, c := range cases {
		got, err := ParseTime(c.in)
		if err != nil {
			t.Errorf("ParseTime(%q): %v", c.in, err)
			continue
		}
		if !got.Equal(c.want) || got.Location() != time.UTC {
			t.Errorf("ParseTime(%q) = %v, want %v", c.in, got, c.want)
		}
	}
	for _, bad := range []string{"", "not-a-date", "2024", "2024-13-01", "2024-02-30", "2024-01-02T25:00",
		"2024-01-02T03:04:05.", "2024-01-02T03:04:05+2", "2024-01-02T03:04:05 extra", "12345"} {
		if _, err := ParseTime(bad); err == nil {
			t.Errorf("ParseTime(%q) accepted", bad)
		}
	}
	// Round trip through the wire form.
	back, err := ParseTime(FormatTime(ts))
	if err != nil || !back.Equal(ts.Truncate(time.Microsecond)) {
		t.Errorf("round trip %v %v", back, err)
	}
}

func TestSignatureFromValue(t *testing.T) {
	v, err := UnmarshalJSON([]byte(`{"task": "tasks.add", "args": [4], "kwargs": {"y": 1}, "options": {"task_id": "x"}, "subtask_type": null, "immutable": true, "chord_size": null}`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := SignatureFromValue(v)
	if err != nil {
		t.Fatal(err)
	}
	if s.Task != "tasks.add" || len(s.Args) != 1 || s.Kwargs["y"] != int64(1) || s.Options["task_id"] != "x" || !s.Immutable || s.SubtaskType != "" {
		t.Errorf("%+v", s)
	}
	s, err = SignatureFromValue(Dict{{"task", "t"}, {"subtask_type", "group"}})
	if err != nil || s.Options == nil || s.Kwargs == nil || s.Args == nil || s.SubtaskType != "group" || s.Immutable {
		t.Errorf("defaults: %+v %v", s, err)
	}
	for _, bad := range []any{nil, "x", []any{}, map[string]any{"task": 1}, map[string]any{"args": "12"},
		map[string]any{"kwargs": []any{}}, map[string]any{"options": "o"}, map[string]any{"immutable": "yes"},
		map[string]any{"subtask_type": 3}} {
		if _, err := SignatureFromValue(bad); err == nil {
			t.Errorf("SignatureFromValue(%#v) accepted", bad)
		}
	}
}

func TestEncodeOptionsAndErrors(t *testing.T) {
	eta := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	tl := 10.0
	soft := 2.5
	gi := 1
	m := &Message{
		ID: "abc", Task: "tasks.add", Args: []any{2, int8(3)}, Kwargs: map[string]any{"y": uint16(3)},
		ETA: &eta, Expires: &eta, TimeLimit: &tl, SoftTimeLimit: &soft, GroupID: "g", GroupIndex: &gi,
		Priority: 5, Origin: "gen1@host",
		Headers: map[string]any{"x-int": 7, "x-bytes": []byte("b"), "x-list": []int{1, 2}, "retries": int64(9), "x-t": eta},
	}
	raw, err := Encode(m, EncodeOptions{Now: func() time.Time { return eta.Add(-90 * time.Second) }})
	if err != nil {
		t.Fatal(err)
	}
	if string(raw.Body) != `[[2, 3], {"y": 3}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]` {
		t.Errorf("body %s", raw.Body)
	}
	want := map[string]any{
		"eta": "2030-01-01T12:00:00+00:00", "timelimit": []any{int64(10), 2.5}, "group": "g", "group_index": int64(1),
		"retries": int64(0), "root_id": "abc", "parent_id": nil, "argsrepr": "(2, 3)", "kwargsrepr": "{'y': 3}",
		"x-int": int64(7), "x-bytes": "b", "x-list": []any{int64(1), int64(2)}, "x-t": "2030-01-01T12:00:00+00:00",
		"lang": "py", "origin": "gen1@host",
	}
	for k, w := range want {
		if !valueEqual(raw.Headers[k], w) {
			t.Errorf("header %s = %#v, want %#v", k, raw.Headers[k], w)
		}
	}
	if raw.Expiration != "90000" || raw.Priority != 5 || !raw.HasPriority || raw.CorrelationID != "abc" {
		t.Errorf("properties %+v", raw)
	}
	// Past expiry.
	raw, _ = Encode(m, EncodeOptions{Now: func() time.Time { return eta.Add(time.Hour) }})
	if raw.Expiration != "0" {
		t.Errorf("expiration %q", raw.Expiration)
	}
	// Round trip through Decode, msgpack and zlib.
	raw, err = Encode(m, EncodeOptions{Serializer: "msgpack", Compression: "zlib"})
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(raw, acceptAll)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID != "abc" || !valueEqual(back.Args, []any{int64(2), int64(3)}) || *back.TimeLimit != 10 || *back.SoftTimeLimit != 2.5 ||
		!back.ETA.Equal(eta) || back.GroupID != "g" || *back.GroupIndex != 1 || back.Priority != 5 {
		t.Errorf("%+v", back)
	}

	for _, c := range []struct {
		m    *Message
		opts EncodeOptions
	}{
		{nil, EncodeOptions{}},
		{&Message{Task: "t"}, EncodeOptions{}},
		{&Message{ID: "i"}, EncodeOptions{}},
		{&Message{ID: "i", Task: "t"}, EncodeOptions{Serializer: "pickle"}},
		{&Message{ID: "i", Task: "t"}, EncodeOptions{Compression: "lzma"}},
		{&Message{ID: "i", Task: "t", Args: []any{[]byte("x")}}, EncodeOptions{}},
		{&Message{ID: "i", Task: "t", Headers: map[string]any{"x": make(chan int)}}, EncodeOptions{}},
	} {
		if _, err := Encode(c.m, c.opts); err == nil {
			t.Errorf("Encode(%+v, %+v) accepted", c.m, c.opts)
		}
	}
	// bytes are fine in msgpack.
	if _, err := Encode(&Message{ID: "i", Task: "t", Args: []any{[]byte("x")}}, EncodeOptions{Serializer: "msgpack"}); err != nil {
		t.Error(err)
	}
	var ee *EncodeError
	if _, err := Encode(&Message{ID: "i", Task: "t", Args: []any{[]byte("x")}}, EncodeOptions{}); !errors.As(err, &ee) {
		t.Errorf("bytes in JSON: %v is not an *EncodeError", err)
	}
}

package protocol

import (
	"errors"
	"runtime"
	"testing"
)

// A short msgpack body that declares a huge bin/str/array/map/ext must be
// refused from its length alone: nothing may be allocated for the declared
// size. Measured with runtime.MemStats, not time.
func TestMsgpackHugeDeclaredLengths(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"bin32 2GiB", "\xc6\x7f\xff\xff\xff"},
		{"bin32 4GiB", "\xc6\xff\xff\xff\xff"},
		{"bin16", "\xc5\xff\xff"},
		{"str32 2GiB", "\xdb\x7f\xff\xff\xff"},
		{"str16", "\xda\xff\xff"},
		{"array32", "\xdd\x7f\xff\xff\xff"},
		{"map32", "\xdf\x7f\xff\xff\xff"},
		{"ext32", "\xc9\x7f\xff\xff\xff\x01"},
		{"bin32 in a v2 body", "\x93\x91\xc6\x7f\xff\xff\xff\x80\xc0"},
		{"str32 map key", "\x81\xdb\x7f\xff\xff\xff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := &RawMessage{ContentType: ContentTypeMsgpack, Body: []byte(tc.body),
				Headers: map[string]any{"task": "t", "id": "i"}}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := Decode(raw, DecodeOptions{Accept: []string{"msgpack"}, MaxBodySize: 1 << 20})
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("err = %v, want ErrDecode", err)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
				t.Fatalf("decoding %d bytes allocated %d bytes", len(tc.body), got)
			}
		})
	}
}

// Lengths that fit the body still decode.
func TestMsgpackLengthsWithinBody(t *testing.T) {
	v, err := unmarshalMsgpack([]byte("\x92\xc4\x03abc\xd9\x02hi"), false)
	if err != nil {
		t.Fatal(err)
	}
	a := v.([]any)
	if string(a[0].([]byte)) != "abc" || a[1] != "hi" {
		t.Fatalf("got %#v", v)
	}
}

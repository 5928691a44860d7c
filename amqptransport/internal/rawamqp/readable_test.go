package rawamqp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gworker/gworker/protocol"
)

// contentHeader builds a content header payload with every property set
// and the given header table bytes.
func contentHeader(table []byte) []byte {
	var w wbuf
	w.u16(60)
	w.u16(0)
	w.u64(11)
	w.u16(0xFFFC) // every property, no continuation
	w.shortstr("application/json")
	w.shortstr("utf-8")
	w.u32(uint32(len(table)))
	w.b = append(w.b, table...)
	w.u8(2)
	w.u8(5)
	w.shortstr("corr")
	w.shortstr("reply")
	w.shortstr("60000")
	w.shortstr("mid")
	w.u64(1700000000)
	w.shortstr("type")
	w.shortstr("guest")
	w.shortstr("app")
	w.shortstr("cluster")
	return w.b
}

// field appends a keyed field with a raw tag and payload.
func field(b []byte, key string, tag byte, payload []byte) []byte {
	b = append(b, byte(len(key)))
	b = append(b, key...)
	b = append(b, tag)
	return append(b, payload...)
}

func be64(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }

func TestReadableHeader(t *testing.T) {
	var inner []byte
	inner = field(inner, "deep", 'L', be64(1<<40))
	arr := append([]byte{'L'}, be64(-5)...)
	arr = append(arr, 'S', 0, 0, 0, 1, 'x')
	var tbl []byte
	tbl = field(tbl, "pos", 'L', be64(1<<40))
	tbl = field(tbl, "neg", 'L', be64(-(1 << 40)))
	tbl = field(tbl, "min", 'L', be64(math.MinInt64))
	tbl = field(tbl, "short", 'U', []byte{0xFF, 0xFE})
	tbl = field(tbl, "dec", 'D', []byte{2, 0, 0, 0, 125})
	tbl = field(tbl, "f32", 'f', binary.BigEndian.AppendUint32(nil, math.Float32bits(1.5)))
	tbl = field(tbl, "bytes", 'x', []byte{0, 0, 0, 2, 0xff, 0})
	tbl = field(tbl, "ts", 'T', be64(1700000000))
	tbl = field(tbl, "u8", 'B', []byte{200})
	tbl = field(tbl, "tab", 'F', append(binary.BigEndian.AppendUint32(nil, uint32(len(inner))), inner...))
	tbl = field(tbl, "arr", 'A', append(binary.BigEndian.AppendUint32(nil, uint32(len(arr))), arr...))
	in := contentHeader(tbl)

	var orig Message
	if _, err := decodeContentHeader(in, &orig); err != nil {
		t.Fatal(err)
	}
	if orig.ForeignTags != "LU" {
		t.Fatalf("foreign tags %q", orig.ForeignTags)
	}
	out, err := ReadableHeader(in)
	if err != nil {
		t.Fatal(err)
	}
	var got Message
	if _, err := decodeContentHeader(out, &got); err != nil {
		t.Fatal(err)
	}
	if got.ForeignTags != "" {
		t.Errorf("still unreadable types %q", got.ForeignTags)
	}
	want := Properties{MessageID: "mid", Timestamp: time.Unix(1700000000, 0).UTC(), Type: "type", UserID: "guest", AppID: "app", ClusterID: "cluster"}
	if got.Props != want {
		t.Errorf("props %+v, want %+v", got.Props, want)
	}
	r := got.Raw
	if r.ContentType != "application/json" || r.ContentEncoding != "utf-8" || r.DeliveryMode != 2 || r.Priority != 5 ||
		r.CorrelationID != "corr" || r.ReplyTo != "reply" || r.Expiration != "60000" {
		t.Errorf("raw %+v", r)
	}
	h := r.Headers
	for k, v := range map[string]any{"pos": int64(1) << 40, "neg": float64(-(int64(1) << 40)), "min": "-9223372036854775808",
		"short": int64(-2), "dec": "1.25", "f32": 1.5, "ts": time.Unix(1700000000, 0).UTC(), "u8": int64(200)} {
		if h[k] != v {
			t.Errorf("%s = %#v, want %#v", k, h[k], v)
		}
	}
	// The types: only L and U changed.
	var tags []byte
	rd := rbuf{b: out[14+1+16+1+5:]}
	rd.table(0, &tags)
	if rd.err != nil {
		t.Fatal(rd.err)
	}
	if want := "ldSsDfxTBFlAdS"; string(tags) != want {
		t.Errorf("field types %q, want %q", tags, want)
	}
	// Everything after the table is byte for byte the same.
	if !bytes.HasSuffix(out, in[len(in)-54:]) {
		t.Error("properties after the table changed")
	}
}

func TestReadableHeaderMalformed(t *testing.T) {
	for name, table := range map[string][]byte{
		"unknown tag": field(nil, "k", 'Z', nil),
		"truncated L": field(nil, "k", 'L', []byte{1, 2}),
		"short F":     field(nil, "k", 'F', []byte{0, 0, 0, 9, 1}),
	} {
		if _, err := ReadableHeader(contentHeader(table)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := ReadableHeader([]byte{0, 60}); err == nil {
		t.Error("truncated header: no error")
	}
}

// FuzzFrames feeds the frame reader arbitrary bytes: frames, method
// arguments, content headers and their header tables are read, and
// ReadableHeader rewrites what decodes. Nothing may panic, and a rewritten
// header must decode to the same properties with no unreadable type left.
func FuzzFrames(f *testing.F) {
	frame := func(typ byte, payload []byte) []byte {
		b := []byte{typ, 0, 1}
		b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
		return append(append(b, payload...), frameEnd)
	}
	hdr := contentHeader(field(field(nil, "big", 'L', be64(1<<40)), "s", 'S', []byte{0, 0, 0, 1, 'x'}))
	f.Add(frame(frameHeader, hdr))
	f.Add(append(frame(frameMethod, []byte{0, 60, 0, 71, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}), frame(frameHeader, hdr)...))
	f.Add(frame(frameHeartbeat, nil))
	f.Add(frame(frameHeader, contentHeader([]byte{0, 0, 0, 0})))
	var w wbuf
	if err := w.table(protocol.Dict{{Key: "a", Value: []any{int64(1) << 50, "x", protocol.Dict{{Key: "b", Value: -(int64(1) << 60)}}}}}, 0); err == nil {
		f.Add(frame(frameHeader, contentHeader(w.b[4:])))
	}
	f.Add([]byte(strings.Repeat("\x02\x00\x01\xff\xff\xff\xff", 3)))
	f.Fuzz(func(t *testing.T, data []byte) {
		rc := &Conn{r: bufio.NewReader(bytes.NewReader(data)), frameMax: 131072}
		for i := 0; i < 16; i++ {
			typ, _, p, err := rc.readFrame()
			if err != nil {
				return
			}
			switch typ {
			case frameMethod:
				rd := rbuf{b: p}
				rd.u16()
				rd.u16()
				rd.u64()
				rd.u8()
				rd.shortstr()
				rd.shortstr()
				rd.u32()
			case frameHeader:
				var m Message
				if _, err := decodeContentHeader(p, &m); err != nil {
					continue
				}
				out, err := ReadableHeader(p)
				if err != nil {
					t.Fatalf("a header that decodes cannot be rewritten: %v", err)
				}
				var m2 Message
				if _, err := decodeContentHeader(out, &m2); err != nil {
					t.Fatalf("the rewritten header does not decode: %v", err)
				}
				if m2.ForeignTags != "" || m2.Props != m.Props || m2.Raw.ContentType != m.Raw.ContentType ||
					m2.Raw.Expiration != m.Raw.Expiration || len(m2.Raw.Headers) != len(m.Raw.Headers) {
					t.Fatalf("rewrite changed the message: %+v / %+v", m, m2)
				}
			}
		}
	})
}

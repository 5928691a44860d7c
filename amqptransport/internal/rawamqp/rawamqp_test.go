package rawamqp

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/gworker/gworker/protocol"
)

type vector struct {
	Properties struct {
		ContentType     string `json:"content_type"`
		ContentEncoding string `json:"content_encoding"`
		DeliveryMode    uint8  `json:"delivery_mode"`
		Priority        *uint8 `json:"priority"`
		CorrelationID   string `json:"correlation_id"`
		ReplyTo         string `json:"reply_to"`
		Expiration      string `json:"expiration"`
	} `json:"properties"`
	Headers  json.RawMessage `json:"headers"`
	FrameHex string          `json:"content_header_frame_hex"`
	BodySize int             `json:"body_size"`
}

// orderedJSON decodes a JSON value keeping object key order (protocol.Dict)
// and integers as int64.
func orderedJSON(t *testing.T, dec *json.Decoder) any {
	t.Helper()
	tok, err := dec.Token()
	if err != nil {
		t.Fatal(err)
	}
	switch x := tok.(type) {
	case json.Delim:
		switch x {
		case '{':
			d := protocol.Dict{}
			for dec.More() {
				k, _ := dec.Token()
				d = append(d, protocol.Item{Key: k.(string), Value: orderedJSON(t, dec)})
			}
			dec.Token()
			return d
		case '[':
			a := []any{}
			for dec.More() {
				a = append(a, orderedJSON(t, dec))
			}
			dec.Token()
			return a
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	}
	return tok
}

func plain(v any) any {
	switch x := v.(type) {
	case protocol.Dict:
		m := map[string]any{}
		for _, it := range x {
			m[it.Key] = plain(it.Value)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = plain(e)
		}
		return a
	}
	return v
}

// The raw client reads Celery's content headers exactly as py-amqp wrote
// them, and writes the same bytes back.
func TestRawContentHeaderVectors(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/v2_*.json")
	if len(files) == 0 {
		t.Fatal("no vectors in testdata")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var v vector
			if err := json.Unmarshal(data, &v); err != nil {
				t.Fatal(err)
			}
			frame, err := hex.DecodeString(v.FrameHex)
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(bytes.NewReader(v.Headers))
			dec.UseNumber()
			headers := orderedJSON(t, dec).(protocol.Dict)

			var m Message
			size, err := decodeContentHeader(frame, &m)
			if err != nil {
				t.Fatal(err)
			}
			if int(size) != v.BodySize {
				t.Errorf("body size %d, want %d", size, v.BodySize)
			}
			if m.ForeignTags != "" {
				t.Errorf("foreign tags %q in a small-int message", m.ForeignTags)
			}
			p := v.Properties
			r := m.Raw
			if r.ContentType != p.ContentType || r.ContentEncoding != p.ContentEncoding ||
				r.DeliveryMode != p.DeliveryMode || r.CorrelationID != p.CorrelationID || r.ReplyTo != p.ReplyTo ||
				r.Expiration != p.Expiration || (p.Priority != nil && r.Priority != *p.Priority) {
				t.Errorf("properties %+v, want %+v", r, p)
			}
			if want := plain(headers); !reflect.DeepEqual(r.Headers, want) {
				t.Errorf("headers\n got %#v\nwant %#v", r.Headers, want)
			}

			// Encode back: identical bytes.
			out := r
			out.HasPriority = p.Priority != nil
			enc, err := encodeContentHeader(&out, headers, size)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, frame) {
				t.Errorf("re-encoded header differs\n got %x\nwant %x", enc, frame)
			}
		})
	}
}

func TestRawTableAllTypes(t *testing.T) {
	ts := time.Unix(1700000000, 0).UTC()
	in := protocol.Dict{
		{Key: "big", Value: int64(1) << 40}, {Key: "neg", Value: -(int64(1) << 40)},
		{Key: "min", Value: int64(math.MinInt64)}, {Key: "i", Value: int64(7)},
		{Key: "s", Value: "x"}, {Key: "t", Value: true}, {Key: "d", Value: 1.5}, {Key: "v", Value: nil},
		{Key: "ts", Value: ts}, {Key: "a", Value: []any{int64(1) << 33, "y"}},
		{Key: "f", Value: protocol.Dict{{Key: "deep", Value: int64(-5_000_000_000)}}},
	}
	var w wbuf
	if err := w.table(in, 0); err != nil {
		t.Fatal(err)
	}
	var tags []byte
	r := rbuf{b: w.b}
	got := r.table(0, &tags)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if want := plain(in); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
	if !bytes.Contains(tags, []byte("L")) {
		t.Fatalf("no 'L' written: %q", tags)
	}
}

func TestRawTableMalformed(t *testing.T) {
	for name, b := range map[string][]byte{
		"truncated":   {0, 0, 0, 10, 1, 'k'},
		"unknown tag": {0, 0, 0, 3, 1, 'k', 'Z'},
		"short value": {0, 0, 0, 4, 1, 'k', 'I', 0},
		"huge length": {0xff, 0xff, 0xff, 0xff},
	} {
		var tags []byte
		r := rbuf{b: b}
		r.table(0, &tags)
		if !errors.Is(r.err, ErrProtocol) {
			t.Errorf("%s: err = %v", name, r.err)
		}
	}
	// Deep nesting is refused, not a stack overflow.
	deep := []byte{0, 0, 0, 0}
	for i := 0; i < 200; i++ {
		entry := append([]byte{1, 'k', 'F'}, deep...)
		deep = append(binary.BigEndian.AppendUint32(nil, uint32(len(entry))), entry...)
	}
	var tags []byte
	r := rbuf{b: deep}
	r.table(0, &tags)
	if !errors.Is(r.err, ErrProtocol) {
		t.Errorf("deep table: err = %v", r.err)
	}
	var w wbuf
	d := protocol.Dict{{Key: "k", Value: nil}}
	for i := 0; i < 100; i++ {
		d = protocol.Dict{{Key: "k", Value: d}}
	}
	if err := w.table(d, 0); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("deep encode: %v", err)
	}
}

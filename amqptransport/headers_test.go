package amqptransport

import (
	"errors"
	"math"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gworker/gworker/protocol"
)

func TestHeadersFromAMQP(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	in := amqp.Table{
		"i8": int8(-3), "u8": uint8(3), "i16": int16(-300), "u16": uint16(300),
		"i32": int32(-70000), "u32": uint32(70000), "i64": int64(1 << 40),
		"f32": float32(1.5), "f64": 2.25, "s": "x", "b": true, "nil": nil,
		"dec": amqp.Decimal{Scale: 2, Value: -12345}, "dec0": amqp.Decimal{Value: 7},
		"dec3": amqp.Decimal{Scale: 3, Value: 5},
		"ts":   ts, "bytes": []byte("raw"),
		"arr": []any{int32(1), amqp.Table{"k": int16(2)}},
		"tbl": amqp.Table{"inner": []any{float32(0.5)}},
	}
	got := headersFromAMQP(in)
	want := map[string]any{
		"i8": int64(-3), "u8": int64(3), "i16": int64(-300), "u16": int64(300),
		"i32": int64(-70000), "u32": int64(70000), "i64": int64(1 << 40),
		"f32": 1.5, "f64": 2.25, "s": "x", "b": true, "nil": nil,
		"dec": "-123.45", "dec0": "7", "dec3": "0.005",
		"ts": ts, "bytes": []byte("raw"),
		"arr": []any{int64(1), map[string]any{"k": int64(2)}},
		"tbl": map[string]any{"inner": []any{0.5}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("headersFromAMQP:\n got %#v\nwant %#v", got, want)
	}
}

func TestHeadersToAMQP(t *testing.T) {
	in := map[string]any{
		"small": 5, "neg": -5, "max32": math.MaxInt32, "min32": int64(math.MinInt32),
		"big": int64(1) << 40, "negbig": -(int64(1) << 40), "negbigger": int64(math.MinInt64),
		"u64": uint64(math.MaxInt64), "bigsmall": big.NewInt(42),
		"i8": int8(1), "i16": int16(2), "u8": uint8(3), "f32": float32(0.5),
		"bytes": []byte("b"), "nil": nil, "s": "str", "t": true,
		"list":   []any{1, "a", []int{2, 3}},
		"dict":   protocol.Dict{{Key: "a", Value: 1}, {Key: "b", Value: map[string]string{"c": "d"}}},
		"strs":   []string{"x", "y"},
		"nested": map[string]any{"timelimit": []any{10, 5.0}},
		"struct": struct {
			Area float64 `json:"area"`
		}{6},
		"floats": []float64{1, 2},
		"binary": []byte{0xff, 0},
		"ts":     time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	got, err := HeadersToAMQP(in)
	if err != nil {
		t.Fatal(err)
	}
	want := amqp.Table{
		"small": int32(5), "neg": int32(-5), "max32": int32(math.MaxInt32), "min32": int32(math.MinInt32),
		"big": int64(1) << 40, "negbig": float64(-(int64(1) << 40)), "negbigger": "-9223372036854775808",
		"u64": int64(math.MaxInt64), "bigsmall": int32(42),
		"i8": int32(1), "i16": int32(2), "u8": int32(3), "f32": 0.5,
		"bytes": "b", "nil": nil, "s": "str", "t": true,
		"list":   []any{int32(1), "a", []any{int32(2), int32(3)}},
		"dict":   amqp.Table{"a": int32(1), "b": amqp.Table{"c": "d"}},
		"strs":   []any{"x", "y"},
		"nested": amqp.Table{"timelimit": []any{int32(10), 5.0}},
		"struct": amqp.Table{"area": 6.0},
		"floats": []any{1.0, 2.0},
		"binary": []byte{0xff, 0},
		"ts":     time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("HeadersToAMQP:\n got %#v\nwant %#v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("amqp091-go rejects the table: %v", err)
	}
	// Never a type py-amqp misreads.
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case int8, int16, uint8, uint16, int:
			t.Errorf("unsafe header type %T", v)
		case int64:
			if x < 0 {
				t.Errorf("negative int64 %d would be read as unsigned by py-amqp", x)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case amqp.Table:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(got)
}

func TestHeadersToAMQPErrors(t *testing.T) {
	huge, _ := new(big.Int).SetString("123456789012345678901234567890", 10)
	deep := map[string]any{}
	cur := deep
	for i := 0; i < 100; i++ {
		n := map[string]any{}
		cur["x"] = n
		cur = n
	}
	for name, h := range map[string]map[string]any{
		"func":     {"f": func() {}},
		"chan":     {"c": make(chan int)},
		"longkey":  {strings.Repeat("k", 256): 1},
		"deep":     deep,
		"intkeys":  {"m": map[int]string{1: "a"}},
		"u64":      {"u": uint64(math.MaxUint64)},
		"bigint":   {"b": huge},
		"innerkey": {"m": map[string]any{strings.Repeat("k", 300): 1}},
	} {
		if _, err := HeadersToAMQP(h); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: err = %v, want ErrInvalidMessage", name, err)
		}
	}
}

func TestPublishingFromRaw(t *testing.T) {
	m := &protocol.RawMessage{
		Headers: map[string]any{"id": "x"}, ContentType: "application/json", ContentEncoding: "utf-8",
		Body: []byte("[]"), CorrelationID: "c", ReplyTo: "r", DeliveryMode: 2, Priority: 7,
		Expiration: "1000",
	}
	p, err := publishingFromRaw(m)
	if err != nil {
		t.Fatal(err)
	}
	if p.Priority != 0 {
		t.Errorf("priority set without HasPriority: %d", p.Priority)
	}
	m.HasPriority = true
	p, _ = publishingFromRaw(m)
	if p.Priority != 7 || p.CorrelationId != "c" || p.ReplyTo != "r" || p.DeliveryMode != 2 ||
		p.Expiration != "1000" || p.ContentEncoding != "utf-8" || p.Headers["id"] != "x" {
		t.Errorf("publishing = %+v", p)
	}
	for _, bad := range []*protocol.RawMessage{
		nil,
		{CorrelationID: strings.Repeat("c", 256)},
		{Expiration: "soon"},
		{Headers: map[string]any{"x": struct{ A chan int }{}}},
	} {
		if _, err := publishingFromRaw(bad); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("publishingFromRaw(%+v) err = %v", bad, err)
		}
	}
}

package amqptransport

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gworker/gworker/protocol"
)

// fuzzTable builds an AMQP table of every Go type amqp091-go decodes into,
// driven by data.
type fuzzTable struct{ b []byte }

func (g *fuzzTable) byte() byte {
	if len(g.b) == 0 {
		return 0
	}
	c := g.b[0]
	g.b = g.b[1:]
	return c
}

func (g *fuzzTable) u64() uint64 {
	var x [8]byte
	for i := range x {
		x[i] = g.byte()
	}
	return binary.BigEndian.Uint64(x[:])
}

func (g *fuzzTable) str() string {
	n := int(g.byte() % 16)
	n = min(n, len(g.b))
	s := string(g.b[:n])
	g.b = g.b[n:]
	return s
}

func (g *fuzzTable) value(depth int) any {
	switch g.byte() % 20 {
	case 0:
		return nil
	case 1:
		return g.byte()&1 == 1
	case 2:
		return int8(g.byte())
	case 3:
		return g.byte()
	case 4:
		return int16(g.u64())
	case 5:
		return uint16(g.u64())
	case 6:
		return int32(g.u64())
	case 7:
		return uint32(g.u64())
	case 8:
		return int64(g.u64())
	case 9:
		return math.Float32frombits(uint32(g.u64()))
	case 10:
		return math.Float64frombits(g.u64())
	case 11:
		return amqp.Decimal{Scale: g.byte(), Value: int32(g.u64())}
	case 12:
		return time.Unix(int64(g.u64()%(1<<40)), 0)
	case 13:
		return []byte(g.str())
	case 14, 15:
		return g.str()
	case 16, 17:
		if depth > 70 {
			return nil
		}
		n := int(g.byte() % 5)
		a := make([]any, n)
		for i := range a {
			a[i] = g.value(depth + 1)
		}
		return a
	default:
		if depth > 70 {
			return nil
		}
		return g.table(depth + 1)
	}
}

func (g *fuzzTable) table(depth int) amqp.Table {
	t := amqp.Table{}
	for n := int(g.byte() % 6); n > 0; n-- {
		t[g.str()] = g.value(depth)
	}
	return t
}

// protocolValue reports whether v holds only protocol value types.
func protocolValue(v any) bool {
	switch x := v.(type) {
	case nil, bool, string, float64, int64, time.Time, []byte:
		return true
	case []any:
		for _, e := range x {
			if !protocolValue(e) {
				return false
			}
		}
		return true
	case map[string]any:
		for _, e := range x {
			if !protocolValue(e) {
				return false
			}
		}
		return true
	}
	return false
}

// FuzzHeaders converts tables of every amqp091-go type into protocol
// values and back, and arbitrary JSON values into tables: nothing panics,
// only protocol types come out, and what HeadersToAMQP accepts is a table
// amqp091-go can write.
func FuzzHeaders(f *testing.F) {
	f.Add([]byte{5, 1, 'a', 8, 0, 0, 1, 0, 0, 0, 0, 0}, []byte(`{"task": "t", "big": 1099511627776}`))
	f.Add([]byte{3, 1, 'd', 11, 2, 0, 0, 0, 0, 0, 0, 0, 125, 1, 'n', 18, 2, 1, 'x', 9}, []byte(`{"neg": -1099511627776, "f": 1.5}`))
	f.Add([]byte{1, 1, 'l', 16, 3, 2, 1, 3, 4, 5}, []byte(`{"nested": {"l": [1, "x", null, true]}}`))
	f.Add([]byte{}, []byte(`{"huge": 18446744073709551616, "s": "\u00e9"}`))
	f.Fuzz(func(t *testing.T, tableBytes, jsonBytes []byte) {
		g := &fuzzTable{b: tableBytes}
		tbl := g.table(0)
		h := headersFromAMQP(tbl)
		for k, v := range h {
			if !protocolValue(v) {
				t.Fatalf("header %q: %T is not a protocol value", k, v)
			}
		}
		check := func(h map[string]any) {
			out, err := HeadersToAMQP(h)
			if err != nil {
				if !errors.Is(err, ErrInvalidMessage) {
					t.Fatalf("%v does not wrap ErrInvalidMessage", err)
				}
				return
			}
			if err := out.Validate(); err != nil {
				t.Fatalf("HeadersToAMQP gave a table amqp091-go refuses: %v", err)
			}
			for k, v := range headersFromAMQP(out) {
				if !protocolValue(v) {
					t.Fatalf("round trip %q: %T", k, v)
				}
			}
		}
		check(h)
		if v, err := protocol.UnmarshalJSON(jsonBytes); err == nil {
			if m, ok := v.(map[string]any); ok {
				check(m)
			}
		}
	})
}

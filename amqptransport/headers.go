package amqptransport

import (
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gworker/gworker/protocol"
)

// maxHeaderDepth bounds the nesting of header tables and arrays in both
// directions, so a hostile message cannot exhaust the stack.
const maxHeaderDepth = 64

// headersFromAMQP converts a header table as amqp091-go decoded it into the
// value types of package protocol. The table is converted in place and
// returned: amqp091-go decodes a fresh one for every delivery and nothing
// else holds it, and a Celery message's 20-odd headers are mostly strings
// that need no conversion, so copying them cost a map per message.
func headersFromAMQP(t amqp.Table) map[string]any {
	if t == nil {
		return nil
	}
	m := map[string]any(t)
	for k, v := range m {
		switch v.(type) {
		case nil, bool, string, float64, int64, time.Time, []byte:
			continue // already a protocol value
		}
		m[k] = valueFromAMQP(v, 0)
	}
	return m
}

func valueFromAMQP(v any, depth int) any {
	if depth > maxHeaderDepth {
		return nil
	}
	switch x := v.(type) {
	case nil, bool, string, float64, int64, time.Time, []byte:
		return x
	case int8:
		return int64(x)
	case uint8:
		return int64(x)
	case int16:
		return int64(x)
	case uint16:
		return int64(x)
	case int32:
		return int64(x)
	case uint32:
		return int64(x)
	case int:
		return int64(x)
	case float32:
		return float64(x)
	case amqp.Decimal:
		return decimalString(x)
	case amqp.Table:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = valueFromAMQP(e, depth+1)
		}
		return m
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = valueFromAMQP(e, depth+1)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = valueFromAMQP(e, depth+1)
		}
		return a
	default:
		return fmt.Sprint(x)
	}
}

// decimalString renders an AMQP decimal exactly, as Python's str(Decimal)
// does for plain values: Value·10^-Scale.
func decimalString(d amqp.Decimal) string {
	s := strconv.FormatInt(int64(d.Value), 10)
	if d.Scale == 0 {
		return s
	}
	neg := false
	if s[0] == '-' {
		neg, s = true, s[1:]
	}
	sc := int(d.Scale)
	for len(s) <= sc {
		s = "0" + s
	}
	s = s[:len(s)-sc] + "." + s[len(s)-sc:]
	if neg {
		s = "-" + s
	}
	return s
}

// HeadersToAMQP converts header values of package protocol into an AMQP
// table that both amqp091-go and py-amqp read back with the same value:
//
//   - integers in the int32 range become int32 (field type 'I');
//   - larger positive integers become int64 (type 'l': py-amqp reads it as
//     unsigned 64-bit, which is the same value);
//   - negative integers below the int32 range cannot be written safely
//     (amqp091-go has no writer for 'L', and py-amqp would read 'l' as a
//     huge unsigned number): they become float64 when the float holds them
//     exactly (|v| ≤ 2^53), otherwise their decimal string, as do integers
//     beyond the int64 range (*big.Int, large uint64);
//   - float32 becomes float64; []byte becomes a string (py-amqp reads 'x'
//     but Celery never sends it); time.Time and amqp.Decimal are kept;
//   - maps (map[string]any, protocol.Dict, amqp.Table, any map with string
//     keys) become tables, slices and arrays become field arrays.
//
// Other types, keys longer than 255 bytes and nesting deeper than 64 give
// an error wrapping ErrInvalidMessage.
func HeadersToAMQP(h map[string]any) (amqp.Table, error) {
	if h == nil {
		return amqp.Table{}, nil
	}
	t := make(amqp.Table, len(h))
	for k, v := range h {
		if len(k) > 255 {
			return nil, fmt.Errorf("%w: header key of %d bytes (max 255)", ErrInvalidMessage, len(k))
		}
		cv, err := valueToAMQP(v, 0)
		if err != nil {
			return nil, fmt.Errorf("%w: header %q: %v", ErrInvalidMessage, k, err)
		}
		t[k] = cv
	}
	return t, nil
}

func intToAMQP(v int64) any {
	if v >= math.MinInt32 && v <= math.MaxInt32 {
		return int32(v)
	}
	if v > 0 {
		return v
	}
	if v >= -(1 << 53) {
		return float64(v)
	}
	return strconv.FormatInt(v, 10)
}

func uintToAMQP(v uint64) any {
	if v <= math.MaxInt64 {
		return intToAMQP(int64(v))
	}
	return strconv.FormatUint(v, 10)
}

func valueToAMQP(v any, depth int) (any, error) {
	if depth > maxHeaderDepth {
		return nil, fmt.Errorf("nested deeper than %d", maxHeaderDepth)
	}
	switch x := v.(type) {
	case nil, bool, string, float64, time.Time, amqp.Decimal:
		return x, nil
	case []byte:
		return string(x), nil
	case float32:
		return float64(x), nil
	case int:
		return intToAMQP(int64(x)), nil
	case int8:
		return int32(x), nil
	case int16:
		return int32(x), nil
	case int32:
		return x, nil
	case int64:
		return intToAMQP(x), nil
	case uint:
		return uintToAMQP(uint64(x)), nil
	case uint8:
		return int32(x), nil
	case uint16:
		return int32(x), nil
	case uint32:
		return uintToAMQP(uint64(x)), nil
	case uint64:
		return uintToAMQP(x), nil
	case *big.Int:
		if x == nil {
			return nil, nil
		}
		if x.IsInt64() {
			return intToAMQP(x.Int64()), nil
		}
		return x.String(), nil
	case protocol.Dict:
		t := make(amqp.Table, len(x))
		for _, it := range x {
			if err := putTable(t, it.Key, it.Value, depth); err != nil {
				return nil, err
			}
		}
		return t, nil
	case amqp.Table:
		return mapToAMQP(x, depth)
	case map[string]any:
		return mapToAMQP(x, depth)
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			c, err := valueToAMQP(e, depth+1)
			if err != nil {
				return nil, err
			}
			a[i] = c
		}
		return a, nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return nil, nil
		}
		a := make([]any, rv.Len())
		for i := range a {
			c, err := valueToAMQP(rv.Index(i).Interface(), depth+1)
			if err != nil {
				return nil, err
			}
			a[i] = c
		}
		return a, nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			break
		}
		if rv.IsNil() {
			return nil, nil
		}
		t := make(amqp.Table, rv.Len())
		it := rv.MapRange()
		for it.Next() {
			if err := putTable(t, it.Key().String(), it.Value().Interface(), depth); err != nil {
				return nil, err
			}
		}
		return t, nil
	case reflect.String:
		return rv.String(), nil
	case reflect.Bool:
		return rv.Bool(), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return intToAMQP(rv.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return uintToAMQP(rv.Uint()), nil
	case reflect.Float32, reflect.Float64:
		return rv.Float(), nil
	case reflect.Pointer:
		if rv.IsNil() {
			return nil, nil
		}
		return valueToAMQP(rv.Elem().Interface(), depth+1)
	}
	return nil, fmt.Errorf("unsupported type %T", v)
}

func mapToAMQP[M ~map[string]any](m M, depth int) (any, error) {
	t := make(amqp.Table, len(m))
	for k, e := range m {
		if err := putTable(t, k, e, depth); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func putTable(t amqp.Table, k string, v any, depth int) error {
	if len(k) > 255 {
		return fmt.Errorf("table key of %d bytes (max 255)", len(k))
	}
	c, err := valueToAMQP(v, depth+1)
	if err != nil {
		return fmt.Errorf("key %q: %w", k, err)
	}
	t[k] = c
	return nil
}

// rawFromDelivery fills a protocol.RawMessage from an amqp091-go delivery.
func rawFromDelivery(d *amqp.Delivery) protocol.RawMessage {
	return protocol.RawMessage{
		Headers:         headersFromAMQP(d.Headers),
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		Body:            d.Body,
		CorrelationID:   d.CorrelationId,
		ReplyTo:         d.ReplyTo,
		DeliveryMode:    d.DeliveryMode,
		Priority:        d.Priority,
		HasPriority:     d.Priority != 0,
		Expiration:      d.Expiration,
		Exchange:        d.Exchange,
		RoutingKey:      d.RoutingKey,
		Redelivered:     d.Redelivered,
	}
}

// publishingFromRaw maps a RawMessage onto an amqp091-go Publishing.
func publishingFromRaw(m *protocol.RawMessage) (amqp.Publishing, error) {
	if m == nil {
		return amqp.Publishing{}, fmt.Errorf("%w: nil message", ErrInvalidMessage)
	}
	for name, s := range map[string]string{
		"content_type": m.ContentType, "content_encoding": m.ContentEncoding,
		"correlation_id": m.CorrelationID, "reply_to": m.ReplyTo, "expiration": m.Expiration,
	} {
		if len(s) > 255 {
			return amqp.Publishing{}, fmt.Errorf("%w: property %s of %d bytes (max 255)", ErrInvalidMessage, name, len(s))
		}
	}
	if m.Expiration != "" {
		if _, err := strconv.ParseUint(m.Expiration, 10, 32); err != nil {
			return amqp.Publishing{}, fmt.Errorf("%w: expiration %q is not a number of milliseconds", ErrInvalidMessage, m.Expiration)
		}
	}
	h, err := HeadersToAMQP(m.Headers)
	if err != nil {
		return amqp.Publishing{}, err
	}
	p := amqp.Publishing{
		Headers:         h,
		ContentType:     m.ContentType,
		ContentEncoding: m.ContentEncoding,
		DeliveryMode:    m.DeliveryMode,
		CorrelationId:   m.CorrelationID,
		ReplyTo:         m.ReplyTo,
		Expiration:      m.Expiration,
		Body:            m.Body,
	}
	if m.HasPriority {
		p.Priority = m.Priority
	}
	return p, nil
}

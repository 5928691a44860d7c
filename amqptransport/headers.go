package amqptransport

import (
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gworker/gworker/amqptransport/internal/rawamqp"
	"github.com/gworker/gworker/protocol"
)

// maxHeaderDepth bounds the nesting of header tables and arrays in both
// directions, so a hostile message cannot exhaust the stack.
const maxHeaderDepth = rawamqp.MaxHeaderDepth

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
		return rawamqp.DecimalString(x)
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

// HeadersToAMQP converts header values into an AMQP table that both
// amqp091-go and py-amqp read back with the same value. Values are first
// converted by protocol.HeaderValue, the rule every transport and the
// producer share (integers widened, floats kept floats, structs by their
// json tags, time.Time as an ISO string, integers beyond int64 refused),
// except the AMQP field types a delivered table holds (time.Time,
// amqp.Decimal, amqp.Table, []byte), which are kept so a delivered message
// is republished unchanged. Then:
//
//   - integers in the int32 range become int32 (field type 'I');
//   - larger positive integers become int64 (type 'l': py-amqp reads it as
//     unsigned 64-bit, which is the same value);
//   - negative integers below the int32 range cannot be written safely
//     (amqp091-go has no writer for 'L', and py-amqp would read 'l' as a
//     huge unsigned number): they become float64 when the float holds them
//     exactly (|v| ≤ 2^53), otherwise their decimal string;
//   - []byte becomes a string when it is UTF-8 text, else stays a byte
//     array (type 'x', which py-amqp reads as bytes);
//   - maps become tables, lists field arrays.
//
// Values HeaderValue refuses, keys longer than 255 bytes and nesting deeper
// than 64 give an error wrapping ErrInvalidMessage.
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

// valueToAMQP maps a header value onto AMQP field types; anything that is
// not already a header value goes through protocol.HeaderValue first.
func valueToAMQP(v any, depth int) (any, error) {
	if depth > maxHeaderDepth {
		return nil, fmt.Errorf("nested deeper than %d", maxHeaderDepth)
	}
	switch x := v.(type) {
	case nil, bool, string, float64, time.Time, amqp.Decimal:
		return x, nil
	case int64:
		return intToAMQP(x), nil
	case []byte:
		if utf8.Valid(x) {
			return string(x), nil
		}
		return x, nil
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
	c, err := protocol.HeaderValue(v)
	if err != nil {
		return nil, err
	}
	return valueToAMQP(c, depth)
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
		AppID:           d.AppId,
		DeliveryMode:    d.DeliveryMode,
		Priority:        d.Priority,
		HasPriority:     true, // see the package doc: kombu always sends one
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
		"correlation_id": m.CorrelationID, "reply_to": m.ReplyTo, "expiration": m.Expiration, "app_id": m.AppID,
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
		AppId:           m.AppID,
		Expiration:      m.Expiration,
		Body:            m.Body,
	}
	if m.HasPriority {
		p.Priority = m.Priority
	}
	return p, nil
}

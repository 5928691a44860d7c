package redistransport

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"

	"github.com/gworker/gworker/protocol"
)

// envelope is a decoded kombu Redis message.
type envelope struct {
	raw        protocol.RawMessage
	tag        string
	exchange   string
	routingKey string
}

// decodeEnvelope reads one kombu envelope as kombu's virtual Message does:
// the body is base64 when properties.body_encoding says so, the delivery
// tag and delivery_info come from the properties.
func decodeEnvelope(item []byte) (*envelope, error) {
	v, err := protocol.UnmarshalJSON(item)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadEnvelope, err)
	}
	top, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: not a JSON object", ErrBadEnvelope)
	}
	props, ok := top["properties"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: no properties object", ErrBadEnvelope)
	}
	e := &envelope{}
	if e.tag, ok = props["delivery_tag"].(string); !ok || e.tag == "" {
		return nil, fmt.Errorf("%w: no delivery_tag", ErrBadEnvelope)
	}
	di, ok := props["delivery_info"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: no delivery_info", ErrBadEnvelope)
	}
	e.exchange, _ = di["exchange"].(string)
	e.routingKey, _ = di["routing_key"].(string)
	r := &e.raw
	r.Exchange, r.RoutingKey = e.exchange, e.routingKey
	r.Redelivered, _ = di["redelivered"].(bool)
	if top["headers"] != nil {
		if r.Headers, ok = top["headers"].(map[string]any); !ok {
			return nil, fmt.Errorf("%w: headers is not an object", ErrBadEnvelope)
		}
	}
	if h, _ := r.Headers["redelivered"].(bool); h {
		r.Redelivered = true
	}
	r.ContentType, _ = top["content-type"].(string)
	r.ContentEncoding, _ = top["content-encoding"].(string)
	switch b := top["body"].(type) {
	case nil:
	case string:
		switch enc, _ := props["body_encoding"].(string); enc {
		case "base64":
			if r.Body, err = base64.StdEncoding.DecodeString(b); err != nil {
				return nil, fmt.Errorf("%w: body is not base64: %v", ErrBadEnvelope, err)
			}
		case "":
			r.Body = []byte(b)
		default:
			return nil, fmt.Errorf("%w: body_encoding %q", ErrBadEnvelope, enc)
		}
	default:
		return nil, fmt.Errorf("%w: body is not a string", ErrBadEnvelope)
	}
	r.CorrelationID, _ = props["correlation_id"].(string)
	r.ReplyTo, _ = props["reply_to"].(string)
	r.AppID, _ = props["app_id"].(string)
	if n, ok := intValue(props["delivery_mode"]); ok && n >= 0 && n <= 255 {
		r.DeliveryMode = uint8(n)
	}
	if n, ok := intValue(props["priority"]); ok {
		r.Priority, r.HasPriority = uint8(min(max(n, 0), 255)), true
	}
	switch x := props["expiration"].(type) {
	case string:
		r.Expiration = x
	case int64:
		r.Expiration = fmt.Sprint(x)
	}
	return e, nil
}

func intValue(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case float64:
		return int64(x), true
	case *big.Int:
		if x.Sign() < 0 {
			return 0, true
		}
		return 255, true
	}
	return 0, false
}

// encodeEnvelope writes msg as kombu's virtual channel does before LPUSH:
// the same keys in the same order, the body base64-encoded.
func encodeEnvelope(msg *protocol.RawMessage, exchange, routingKey, tag string) ([]byte, error) {
	var headers []byte
	if len(msg.Headers) == 0 {
		headers = []byte("{}")
	} else {
		var err error
		if headers, err = protocol.MarshalJSON(msg.Headers); err != nil {
			return nil, fmt.Errorf("%w: headers: %v", ErrInvalidMessage, err)
		}
	}
	str := func(s string) []byte {
		b, _ := protocol.MarshalJSON(s)
		return b
	}
	mode := msg.DeliveryMode
	if mode == 0 {
		mode = 2
	}
	buf := make([]byte, 0, 256+len(headers)+base64.StdEncoding.EncodedLen(len(msg.Body)))
	buf = append(buf, `{"body": "`...)
	buf = base64.StdEncoding.AppendEncode(buf, msg.Body)
	buf = append(buf, `", "content-encoding": `...)
	buf = append(buf, str(msg.ContentEncoding)...)
	buf = append(buf, `, "content-type": `...)
	buf = append(buf, str(msg.ContentType)...)
	buf = append(buf, `, "headers": `...)
	buf = append(buf, headers...)
	buf = append(buf, `, "properties": {`...)
	// kombu writes only the properties it was given.
	if msg.CorrelationID != "" {
		buf = append(buf, `"correlation_id": `...)
		buf = append(buf, str(msg.CorrelationID)...)
		buf = append(buf, ", "...)
	}
	if msg.ReplyTo != "" {
		buf = append(buf, `"reply_to": `...)
		buf = append(buf, str(msg.ReplyTo)...)
		buf = append(buf, ", "...)
	}
	buf = fmt.Appendf(buf, `"delivery_mode": %d`, mode)
	if msg.Expiration != "" {
		buf = append(buf, `, "expiration": `...)
		buf = append(buf, str(msg.Expiration)...)
	}
	buf = append(buf, `, "delivery_info": {"exchange": `...)
	buf = append(buf, str(exchange)...)
	buf = append(buf, `, "routing_key": `...)
	buf = append(buf, str(routingKey)...)
	buf = fmt.Appendf(buf, `}, "priority": %d, "body_encoding": "base64", "delivery_tag": `, msg.Priority)
	buf = append(buf, str(tag)...)
	buf = append(buf, "}}"...)
	return buf, nil
}

// unackedEntry is the value kombu keeps in the unacked hash:
// [envelope, exchange, routing_key].
func unackedEntry(item []byte, exchange, routingKey string) []byte {
	ex, _ := protocol.MarshalJSON(exchange)
	rk, _ := protocol.MarshalJSON(routingKey)
	b := make([]byte, 0, len(item)+len(ex)+len(rk)+6)
	b = append(b, '[')
	b = append(b, item...)
	b = append(b, ", "...)
	b = append(b, ex...)
	b = append(b, ", "...)
	b = append(b, rk...)
	return append(b, ']')
}

// parseUnackedEntry splits an unacked hash value into the envelope and its
// exchange and routing key.
func parseUnackedEntry(v []byte) (item []byte, exchange, routingKey string, err error) {
	i := skipWS(v, 0)
	if i >= len(v) || v[i] != '[' {
		return nil, "", "", fmt.Errorf("%w: unacked entry is not a list", ErrBadEnvelope)
	}
	start := skipWS(v, i+1)
	end, err := skipValue(v, start, 0)
	if err != nil {
		return nil, "", "", err
	}
	rest, err := protocol.UnmarshalJSON(append([]byte{'['}, v[end:][bytes.IndexByte(v[end:], ',')+1:]...))
	if err != nil {
		return nil, "", "", fmt.Errorf("%w: unacked entry: %v", ErrBadEnvelope, err)
	}
	l, _ := rest.([]any)
	if len(l) != 2 {
		return nil, "", "", fmt.Errorf("%w: unacked entry has %d fields after the envelope", ErrBadEnvelope, len(l))
	}
	exchange, _ = l[0].(string)
	routingKey, _ = l[1].(string)
	return v[start:end], exchange, routingKey, nil
}

// markRedelivered sets "redelivered": true in the envelope's headers and
// properties.delivery_info, as kombu does when it restores a message. It
// edits the text so that every other byte (big integers, NaN, key order)
// stays as the sender wrote it. An envelope it cannot read is returned as is.
func markRedelivered(item []byte) []byte {
	out := item
	if vs, _, ok := member(out, 0, "headers"); ok {
		out = setTrue(out, vs, "redelivered")
	}
	if ps, _, ok := member(out, 0, "properties"); ok {
		if ds, _, ok := member(out, ps, "delivery_info"); ok {
			out = setTrue(out, ds, "redelivered")
		}
	}
	return out
}

// setTrue sets key to true in the object starting at obj.
func setTrue(b []byte, obj int, key string) []byte {
	if vs, ve, ok := member(b, obj, key); ok {
		return slicesReplace(b, vs, ve, []byte("true"))
	}
	end, err := skipValue(b, obj, 0)
	if err != nil {
		return b
	}
	closing := end - 1
	ins := `, "` + key + `": true`
	if b[skipWS(b, obj+1)] == '}' {
		ins = ins[2:]
	}
	return slicesReplace(b, closing, closing, []byte(ins))
}

func slicesReplace(b []byte, i, j int, with []byte) []byte {
	out := make([]byte, 0, len(b)-(j-i)+len(with))
	out = append(out, b[:i]...)
	out = append(out, with...)
	return append(out, b[j:]...)
}

// member finds key in the JSON object whose '{' is at obj (after
// whitespace) and returns the span of its value.
func member(b []byte, obj int, key string) (int, int, bool) {
	i := skipWS(b, obj)
	if i >= len(b) || b[i] != '{' {
		return 0, 0, false
	}
	i = skipWS(b, i+1)
	for i < len(b) && b[i] != '}' {
		ks := i
		ke, err := skipValue(b, i, 0)
		if err != nil || b[ks] != '"' {
			return 0, 0, false
		}
		i = skipWS(b, ke)
		if i >= len(b) || b[i] != ':' {
			return 0, 0, false
		}
		vs := skipWS(b, i+1)
		ve, err := skipValue(b, vs, 0)
		if err != nil {
			return 0, 0, false
		}
		if string(b[ks+1:ke-1]) == key {
			return vs, ve, true
		}
		i = skipWS(b, ve)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
		}
	}
	return 0, 0, false
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the JSON value starting at i.
func skipValue(b []byte, i, depth int) (int, error) {
	if depth > protocol.MaxJSONDepth {
		return 0, fmt.Errorf("%w: nested too deep", ErrBadEnvelope)
	}
	if i >= len(b) {
		return 0, fmt.Errorf("%w: truncated JSON", ErrBadEnvelope)
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1, nil
			}
		}
		return 0, fmt.Errorf("%w: unterminated string", ErrBadEnvelope)
	case '{', '[':
		closer := byte('}')
		if b[i] == '[' {
			closer = ']'
		}
		j := skipWS(b, i+1)
		for j < len(b) && b[j] != closer {
			e, err := skipValue(b, j, depth+1)
			if err != nil {
				return 0, err
			}
			j = skipWS(b, e)
			if j < len(b) && (b[j] == ',' || b[j] == ':') {
				j = skipWS(b, j+1)
			}
		}
		if j >= len(b) {
			return 0, fmt.Errorf("%w: unterminated %c", ErrBadEnvelope, b[i])
		}
		return j + 1, nil
	default:
		j := i
		for j < len(b) && !bytes.ContainsRune([]byte(",}]: \t\r\n"), rune(b[j])) {
			j++
		}
		if j == i {
			return 0, fmt.Errorf("%w: unexpected %q", ErrBadEnvelope, b[i])
		}
		return j, nil
	}
}

// newTag returns a random UUID4 as kombu's delivery tags are.
func newTag() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:])
}

// Envelope returns msg as the JSON envelope kombu pushes onto a queue list,
// with a new delivery tag, for callers that push messages themselves
// (pipelined bulk loads). Broker.Publish is the usual way.
func Envelope(msg *protocol.RawMessage, exchange, routingKey string) ([]byte, error) {
	return encodeEnvelope(msg, exchange, routingKey, newTag())
}

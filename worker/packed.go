package worker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/gworker/gworker/protocol"
)

// A held ETA message waits in memory as one byte slice: its RawMessage
// packed (properties, header table and body), instead of the decoded
// message, the header map the transport built and their many small values.
// It is unpacked and decoded again when due. The format is private to the
// process: a tag byte per value, lengths as uvarints, and the names and
// values Celery's messages repeat (header keys, content types) as one byte.

// errPackedMessage: a packed message is truncated or malformed (a bug:
// only packRaw writes them).
var errPackedMessage = errors.New("worker: malformed packed message")

// Value tags.
const (
	tagNil byte = iota
	tagFalse
	tagTrue
	tagString // uvarint length, bytes
	tagCommon // one byte: index in packCommon
	tagInt    // zigzag varint
	tagFloat  // 8 bytes, big endian
	tagTime   // time.Time.MarshalBinary, length first
	tagBytes  // uvarint length, bytes
	tagList   // uvarint count, values
	tagMap    // uvarint count, (key, value) pairs; keys are tagString or tagCommon
	tagSameID // the string of the "id" header, again (a root_id, say)
	tagISO    // a string that is a time as Python's isoformat writes it: varints of Unix microseconds and UTC offset minutes
)

// packCommon are the strings Celery's messages repeat: protocol 2 header
// names, content types and encodings, common values.
var packCommon = [...]string{
	"lang", "py", "task", "id", "shadow", "eta", "expires", "group", "group_index",
	"retries", "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin",
	"ignore_result", "stamped_headers", "stamps", "replaced_task_nesting",
	"application/json", "application/x-msgpack", "utf-8", "binary", "()", "{}",
	"x-delivery-count", "compression", "application/x-gzip", "application/zlib",
	"priority", "go", "celery", "", "callbacks", "errbacks", "chain", "chord",
}

var packCommonIndex = func() map[string]byte {
	m := make(map[string]byte, len(packCommon))
	for i, s := range packCommon {
		m[s] = byte(i)
	}
	return m
}()

// Property flags.
const (
	packHasPriority = 1 << iota
	packRedelivered
	// packEmptyEmbed: the body ended with emptyEmbed, left out.
	packEmptyEmbed
)

// emptyEmbed ends the JSON body of most protocol 2 messages, as Celery
// writes it: the embed of a task without callbacks, errbacks, chain or
// chord.
const emptyEmbed = `, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`

// packRaw packs m. idAt and idLen locate the value of the "id" header in
// the result (idLen -1 when it has none as a string), so that the id can
// be read without unpacking.
func packRaw(m *protocol.RawMessage) (b []byte, idAt, idLen int, err error) {
	id, _ := m.Headers["id"].(string)
	p := packer{buf: make([]byte, 0, packedSize(m)), id: id, idLen: -1}
	var flags byte
	if m.HasPriority {
		flags |= packHasPriority
	}
	if m.Redelivered {
		flags |= packRedelivered
	}
	body := m.Body
	if len(body) >= len(emptyEmbed) && string(body[len(body)-len(emptyEmbed):]) == emptyEmbed {
		flags |= packEmptyEmbed
		body = body[:len(body)-len(emptyEmbed)]
	}
	p.buf = append(p.buf, flags, m.DeliveryMode, m.Priority)
	for _, s := range [...]string{m.ContentType, m.ContentEncoding, m.CorrelationID, m.ReplyTo,
		m.AppID, m.Expiration, m.Exchange, m.RoutingKey} {
		p.str(s)
	}
	if m.Headers == nil {
		p.buf = append(p.buf, tagNil)
	} else if err := p.dict(m.Headers, 0, true); err != nil {
		return nil, 0, 0, err
	}
	p.buf = binary.AppendUvarint(p.buf, uint64(len(body)))
	p.buf = append(p.buf, body...)
	// Held for long: allocated to its size (the guess is generous).
	return append(make([]byte, 0, len(p.buf)), p.buf...), p.idAt, p.idLen, nil
}

// packedSize guesses the packed size of m, to allocate once.
func packedSize(m *protocol.RawMessage) int {
	n := 40 + len(m.Body) + len(m.CorrelationID) + len(m.ReplyTo) + len(m.Exchange) + len(m.RoutingKey)
	for k, v := range m.Headers {
		n += 3 + len(k)
		if s, ok := v.(string); ok {
			n += len(s)
		} else {
			n += 8
		}
	}
	return n
}

type packer struct {
	buf         []byte
	id          string // the "id" header
	idAt, idLen int
}

func (p *packer) str(s string) {
	if i, ok := packCommonIndex[s]; ok {
		p.buf = append(p.buf, tagCommon, i)
		return
	}
	if us, offMin, ok := parseISO(s); ok {
		p.buf = append(p.buf, tagISO)
		p.buf = binary.AppendVarint(p.buf, us)
		p.buf = binary.AppendVarint(p.buf, offMin)
		return
	}
	p.buf = append(p.buf, tagString)
	p.buf = binary.AppendUvarint(p.buf, uint64(len(s)))
	p.buf = append(p.buf, s...)
}

// dict packs a map; top is true for the header table itself, whose "id"
// comes first so that the values equal to it (root_id) can refer to it.
func (p *packer) dict(m map[string]any, depth int, top bool) error {
	p.buf = append(p.buf, tagMap)
	p.buf = binary.AppendUvarint(p.buf, uint64(len(m)))
	if id, ok := m["id"].(string); top && ok {
		p.str("id")
		if _, common := packCommonIndex[id]; common {
			p.str(id)
		} else {
			p.buf = append(p.buf, tagString)
			p.buf = binary.AppendUvarint(p.buf, uint64(len(id)))
			p.idAt, p.idLen = len(p.buf), len(id)
			p.buf = append(p.buf, id...)
		}
	}
	for k, v := range m {
		if _, ok := v.(string); top && ok && k == "id" {
			continue
		}
		p.str(k)
		if err := p.value(v, depth+1); err != nil {
			return fmt.Errorf("header %q: %w", k, err)
		}
	}
	return nil
}

func (p *packer) value(v any, depth int) error {
	if depth > 64 {
		return errors.New("nested too deep")
	}
	switch x := v.(type) {
	case nil:
		p.buf = append(p.buf, tagNil)
	case bool:
		if x {
			p.buf = append(p.buf, tagTrue)
		} else {
			p.buf = append(p.buf, tagFalse)
		}
	case string:
		if x == p.id && p.idLen >= 0 {
			p.buf = append(p.buf, tagSameID)
			break
		}
		p.str(x)
	case int64:
		p.buf = append(p.buf, tagInt)
		p.buf = binary.AppendVarint(p.buf, x)
	case int:
		p.buf = append(p.buf, tagInt)
		p.buf = binary.AppendVarint(p.buf, int64(x))
	case float64:
		p.buf = append(p.buf, tagFloat)
		p.buf = binary.BigEndian.AppendUint64(p.buf, math.Float64bits(x))
	case time.Time:
		t, err := x.MarshalBinary()
		if err != nil {
			return err
		}
		p.buf = append(p.buf, tagTime)
		p.buf = binary.AppendUvarint(p.buf, uint64(len(t)))
		p.buf = append(p.buf, t...)
	case []byte:
		p.buf = append(p.buf, tagBytes)
		p.buf = binary.AppendUvarint(p.buf, uint64(len(x)))
		p.buf = append(p.buf, x...)
	case []any:
		p.buf = append(p.buf, tagList)
		p.buf = binary.AppendUvarint(p.buf, uint64(len(x)))
		for _, e := range x {
			if err := p.value(e, depth+1); err != nil {
				return err
			}
		}
	case map[string]any:
		return p.dict(x, depth, false)
	default:
		return fmt.Errorf("value of type %T", v)
	}
	return nil
}

// unpackRaw returns the message packRaw packed into b.
func unpackRaw(b []byte) (*protocol.RawMessage, error) {
	u := unpacker{b: b}
	if len(b) < 3 {
		return nil, errPackedMessage
	}
	flags := b[0]
	m := &protocol.RawMessage{DeliveryMode: b[1], Priority: b[2],
		HasPriority: flags&packHasPriority != 0, Redelivered: flags&packRedelivered != 0}
	u.b = b[3:]
	for _, s := range [...]*string{&m.ContentType, &m.ContentEncoding, &m.CorrelationID, &m.ReplyTo,
		&m.AppID, &m.Expiration, &m.Exchange, &m.RoutingKey} {
		v, err := u.value(0)
		if err != nil {
			return nil, err
		}
		str, ok := v.(string)
		if !ok {
			return nil, errPackedMessage
		}
		*s = str
	}
	h, err := u.value(0)
	if err != nil {
		return nil, err
	}
	if h != nil {
		if m.Headers, _ = h.(map[string]any); m.Headers == nil {
			return nil, errPackedMessage
		}
	}
	n, err := u.len()
	if err != nil || n != len(u.b) {
		return nil, errPackedMessage
	}
	// The body is copied: a decoded message may keep slices of it (raw
	// JSON values) and must not keep the whole packed message alive.
	if flags&packEmptyEmbed != 0 {
		m.Body = append(append(make([]byte, 0, len(u.b)+len(emptyEmbed)), u.b...), emptyEmbed...)
	} else {
		m.Body = append([]byte(nil), u.b...)
	}
	return m, nil
}

type unpacker struct {
	b  []byte
	id *string // the "id" header once read
}

func (u *unpacker) len() (int, error) {
	n, k := binary.Uvarint(u.b)
	if k <= 0 || n > uint64(len(u.b)-k) {
		return 0, errPackedMessage
	}
	u.b = u.b[k:]
	return int(n), nil
}

func (u *unpacker) value(depth int) (any, error) {
	if len(u.b) == 0 || depth > 65 {
		return nil, errPackedMessage
	}
	tag := u.b[0]
	u.b = u.b[1:]
	switch tag {
	case tagNil:
		return nil, nil
	case tagFalse:
		return false, nil
	case tagTrue:
		return true, nil
	case tagString:
		n, err := u.len()
		if err != nil {
			return nil, err
		}
		s := string(u.b[:n])
		u.b = u.b[n:]
		return s, nil
	case tagSameID:
		if u.id == nil {
			return nil, errPackedMessage
		}
		return *u.id, nil
	case tagISO:
		us, k := binary.Varint(u.b)
		if k <= 0 {
			return nil, errPackedMessage
		}
		u.b = u.b[k:]
		offMin, k := binary.Varint(u.b)
		if k <= 0 || offMin < -24*60 || offMin > 24*60 {
			return nil, errPackedMessage
		}
		u.b = u.b[k:]
		return formatISO(us, offMin), nil
	case tagCommon:
		if len(u.b) == 0 || int(u.b[0]) >= len(packCommon) {
			return nil, errPackedMessage
		}
		s := packCommon[u.b[0]]
		u.b = u.b[1:]
		return s, nil
	case tagInt:
		v, k := binary.Varint(u.b)
		if k <= 0 {
			return nil, errPackedMessage
		}
		u.b = u.b[k:]
		return v, nil
	case tagFloat:
		if len(u.b) < 8 {
			return nil, errPackedMessage
		}
		v := math.Float64frombits(binary.BigEndian.Uint64(u.b))
		u.b = u.b[8:]
		return v, nil
	case tagTime:
		n, err := u.len()
		if err != nil {
			return nil, err
		}
		var t time.Time
		if err := t.UnmarshalBinary(u.b[:n]); err != nil {
			return nil, errPackedMessage
		}
		u.b = u.b[n:]
		return t, nil
	case tagBytes:
		n, err := u.len()
		if err != nil {
			return nil, err
		}
		v := append([]byte{}, u.b[:n]...)
		u.b = u.b[n:]
		return v, nil
	case tagList:
		n, err := u.count()
		if err != nil {
			return nil, err
		}
		l := make([]any, n)
		for i := range l {
			if l[i], err = u.value(depth + 1); err != nil {
				return nil, err
			}
		}
		return l, nil
	case tagMap:
		n, err := u.count()
		if err != nil {
			return nil, err
		}
		m := make(map[string]any, n)
		for range n {
			k, err := u.value(depth + 1)
			if err != nil {
				return nil, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, errPackedMessage
			}
			v, err := u.value(depth + 1)
			if err != nil {
				return nil, err
			}
			m[ks] = v
			if s, ok := v.(string); ok && depth == 0 && ks == "id" && u.id == nil {
				u.id = &s
			}
		}
		return m, nil
	}
	return nil, errPackedMessage
}

// count reads the element count of a list or map: each element takes at
// least one byte.
func (u *unpacker) count() (int, error) {
	n, k := binary.Uvarint(u.b)
	if k <= 0 || n > uint64(len(u.b)-k) {
		return 0, errPackedMessage
	}
	u.b = u.b[k:]
	return int(n), nil
}

// parseISO reads s as a time written by Python's datetime.isoformat() with
// a UTC offset, as Celery writes an eta or expires header
// (2026-12-06T09:09:17.293988+00:00, no fraction when it is 0), only when
// formatISO writes it back byte for byte.
func parseISO(s string) (us, offMin int64, ok bool) {
	if (len(s) != 25 && len(s) != 32) || s[4] != '-' || s[10] != 'T' {
		return 0, 0, false
	}
	t, err := time.Parse("2006-01-02T15:04:05.999999-07:00", s)
	if err != nil || t.Nanosecond()%1000 != 0 {
		return 0, 0, false
	}
	_, off := t.Zone()
	if off%60 != 0 {
		return 0, 0, false
	}
	us, offMin = t.UnixMicro(), int64(off/60)
	if formatISO(us, offMin) != s {
		return 0, 0, false
	}
	return us, offMin, true
}

// formatISO writes a time as Python's isoformat() does.
func formatISO(us, offMin int64) string {
	t := time.UnixMicro(us).In(time.FixedZone("", int(offMin)*60))
	b := make([]byte, 0, 32)
	b = t.AppendFormat(b, "2006-01-02T15:04:05")
	if micro := t.Nanosecond() / 1000; micro != 0 {
		b = fmt.Appendf(b, ".%06d", micro)
	}
	b = t.AppendFormat(b, "-07:00")
	return string(b)
}

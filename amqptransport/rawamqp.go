package amqptransport

// A minimal AMQP 0-9-1 client, independent of amqp091-go, used only by the
// quarantine sweep: it can read every field type of a header table,
// including the 'L' (signed 64-bit) that py-amqp writes and amqp091-go
// cannot decode. It supports PLAIN authentication, one channel at a time,
// basic.get, basic.ack and basic.reject.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gworker/gworker/protocol"
)

const (
	frameMethod    = 1
	frameHeader    = 2
	frameBody      = 3
	frameHeartbeat = 8
	frameEnd       = 0xCE
)

// errRawProtocol is wrapped by errors of the raw client.
var errRawProtocol = errors.New("amqptransport: raw AMQP client")

// amqp091Tags are the field types amqp091-go v1.16 can decode.
const amqp091Tags = "tBbsIluifdDSATFxV"

type rawConn struct {
	c        net.Conn
	r        *bufio.Reader
	frameMax uint32
	ch       uint16 // open channel, 0 if none
	nextCh   uint16
}

// rawMessage is a message fetched with basic.get.
type rawMessage struct {
	tag         uint64
	redelivered bool
	exchange    string
	routingKey  string
	remaining   uint32 // message-count of basic.get-ok
	raw         protocol.RawMessage
	// foreignTags lists header field types amqp091-go cannot decode.
	foreignTags string
	// parseErr is set when the content header cannot be decoded at all.
	parseErr error
}

func dialRaw(ctx context.Context, uri amqp.URI, connName string, timeout time.Duration) (*rawConn, error) {
	addr := net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port))
	d := net.Dialer{Timeout: timeout}
	var c net.Conn
	var err error
	if uri.Scheme == "amqps" {
		c, err = (&tls.Dialer{NetDialer: &d, Config: &tls.Config{ServerName: uri.Host}}).DialContext(ctx, "tcp", addr)
	} else {
		c, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: dial %s: %v", errRawProtocol, addr, err)
	}
	rc := &rawConn{c: c, r: bufio.NewReaderSize(c, 64<<10), frameMax: 131072, nextCh: 1}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := rc.handshake(uri, connName, timeout); err != nil {
		c.Close()
		return nil, err
	}
	return rc, nil
}

func (rc *rawConn) deadline(timeout time.Duration) { _ = rc.c.SetDeadline(time.Now().Add(timeout)) }

func (rc *rawConn) handshake(uri amqp.URI, connName string, timeout time.Duration) error {
	rc.deadline(timeout)
	if _, err := rc.c.Write([]byte("AMQP\x00\x00\x09\x01")); err != nil {
		return fmt.Errorf("%w: %v", errRawProtocol, err)
	}
	if _, err := rc.expect(0, 10, 10); err != nil { // connection.start
		return err
	}
	var w wbuf
	w.u16(10)
	w.u16(11)
	if err := w.table(protocol.Dict{
		{Key: "product", Value: "gworker quarantine"},
		{Key: "connection_name", Value: connName},
	}, 0); err != nil {
		return err
	}
	w.shortstr("PLAIN")
	w.longstr("\x00" + uri.Username + "\x00" + uri.Password)
	w.shortstr("en_US")
	if err := rc.send(frameMethod, 0, w.b); err != nil {
		return err
	}
	p, err := rc.expect(0, 10, 30) // connection.tune
	if err != nil {
		return err
	}
	rd := rbuf{b: p}
	chMax := rd.u16()
	fMax := rd.u32()
	_ = rd.u16() // heartbeat: we answer 0 (none); a sweep is short
	if rd.err != nil {
		return rd.err
	}
	if fMax != 0 && fMax < rc.frameMax {
		rc.frameMax = fMax
	}
	if chMax == 0 {
		chMax = 2047
	}
	w = wbuf{}
	w.u16(10)
	w.u16(31)
	w.u16(chMax)
	w.u32(rc.frameMax)
	w.u16(0)
	if err := rc.send(frameMethod, 0, w.b); err != nil {
		return err
	}
	w = wbuf{}
	w.u16(10)
	w.u16(40)
	w.shortstr(uri.Vhost)
	w.shortstr("")
	w.u8(0)
	if err := rc.send(frameMethod, 0, w.b); err != nil {
		return err
	}
	if _, err := rc.expect(0, 10, 41); err != nil { // connection.open-ok
		return err
	}
	return nil
}

func (rc *rawConn) send(typ byte, ch uint16, payload []byte) error {
	hdr := make([]byte, 7, 7+len(payload)+1)
	hdr[0] = typ
	binary.BigEndian.PutUint16(hdr[1:], ch)
	binary.BigEndian.PutUint32(hdr[3:], uint32(len(payload)))
	buf := append(append(hdr, payload...), frameEnd)
	if _, err := rc.c.Write(buf); err != nil {
		return fmt.Errorf("%w: write: %v", errRawProtocol, err)
	}
	return nil
}

// readFrame reads one frame, skipping heartbeats.
func (rc *rawConn) readFrame() (typ byte, ch uint16, payload []byte, err error) {
	for {
		var h [7]byte
		if _, err := io.ReadFull(rc.r, h[:]); err != nil {
			return 0, 0, nil, fmt.Errorf("%w: read: %v", errRawProtocol, err)
		}
		size := binary.BigEndian.Uint32(h[3:])
		if size > rc.frameMax+8 && size > 1<<20 {
			return 0, 0, nil, fmt.Errorf("%w: frame of %d bytes exceeds frame_max %d", errRawProtocol, size, rc.frameMax)
		}
		payload = make([]byte, size+1)
		if _, err := io.ReadFull(rc.r, payload); err != nil {
			return 0, 0, nil, fmt.Errorf("%w: read: %v", errRawProtocol, err)
		}
		if payload[size] != frameEnd {
			return 0, 0, nil, fmt.Errorf("%w: bad frame end", errRawProtocol)
		}
		if h[0] == frameHeartbeat {
			continue
		}
		return h[0], binary.BigEndian.Uint16(h[1:]), payload[:size], nil
	}
}

// readMethod reads the next method frame; a connection.close or
// channel.close from the broker is answered and returned as *amqp.Error.
func (rc *rawConn) readMethod() (ch, class, method uint16, args []byte, err error) {
	typ, ch, p, err := rc.readFrame()
	if err != nil {
		return 0, 0, 0, nil, err
	}
	if typ != frameMethod || len(p) < 4 {
		return 0, 0, 0, nil, fmt.Errorf("%w: unexpected frame type %d", errRawProtocol, typ)
	}
	class, method = binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:])
	args = p[4:]
	if (class == 10 && method == 50) || (class == 20 && method == 40) {
		rd := rbuf{b: args}
		code := rd.u16()
		text := rd.shortstr()
		var w wbuf
		w.u16(class)
		w.u16(method + 1)
		_ = rc.send(frameMethod, ch, w.b)
		if class == 20 {
			rc.ch = 0
		}
		return ch, class, method, args, &amqp.Error{Code: int(code), Reason: text, Server: true, Recover: class == 20}
	}
	return ch, class, method, args, nil
}

func (rc *rawConn) expect(ch, class, method uint16) ([]byte, error) {
	gotCh, c, m, args, err := rc.readMethod()
	if err != nil {
		return nil, err
	}
	if gotCh != ch || c != class || m != method {
		return nil, fmt.Errorf("%w: expected method %d.%d on channel %d, got %d.%d on %d",
			errRawProtocol, class, method, ch, c, m, gotCh)
	}
	return args, nil
}

func (rc *rawConn) openChannel() error {
	if rc.ch != 0 {
		return nil
	}
	ch := rc.nextCh
	rc.nextCh++
	var w wbuf
	w.u16(20)
	w.u16(10)
	w.shortstr("")
	if err := rc.send(frameMethod, ch, w.b); err != nil {
		return err
	}
	if _, err := rc.expect(ch, 20, 11); err != nil {
		return err
	}
	rc.ch = ch
	return nil
}

// closeChannel closes the open channel: the broker requeues every message
// fetched on it and not acknowledged.
func (rc *rawConn) closeChannel() error {
	if rc.ch == 0 {
		return nil
	}
	var w wbuf
	w.u16(20)
	w.u16(40)
	w.u16(200)
	w.shortstr("")
	w.u16(0)
	w.u16(0)
	if err := rc.send(frameMethod, rc.ch, w.b); err != nil {
		return err
	}
	ch := rc.ch
	rc.ch = 0
	_, err := rc.expect(ch, 20, 41)
	return err
}

func (rc *rawConn) close() error {
	_ = rc.closeChannel()
	rc.deadline(5 * time.Second)
	var w wbuf
	w.u16(10)
	w.u16(50)
	w.u16(200)
	w.shortstr("")
	w.u16(0)
	w.u16(0)
	err := rc.send(frameMethod, 0, w.b)
	if err == nil {
		_, err = rc.expect(0, 10, 51)
	}
	if cerr := rc.c.Close(); err == nil {
		err = cerr
	}
	return err
}

// get fetches one message without acknowledging it; ok is false when the
// queue is empty.
func (rc *rawConn) get(queue string) (*rawMessage, bool, error) {
	if err := rc.openChannel(); err != nil {
		return nil, false, err
	}
	var w wbuf
	w.u16(60)
	w.u16(70)
	w.u16(0)
	w.shortstr(queue)
	w.u8(0) // no-ack false
	if err := rc.send(frameMethod, rc.ch, w.b); err != nil {
		return nil, false, err
	}
	_, class, method, args, err := rc.readMethod()
	if err != nil {
		return nil, false, err
	}
	if class == 60 && method == 72 { // get-empty
		return nil, false, nil
	}
	if class != 60 || method != 71 {
		return nil, false, fmt.Errorf("%w: unexpected method %d.%d after basic.get", errRawProtocol, class, method)
	}
	rd := rbuf{b: args}
	m := &rawMessage{}
	m.tag = rd.u64()
	m.redelivered = rd.u8()&1 == 1
	m.exchange = rd.shortstr()
	m.routingKey = rd.shortstr()
	m.remaining = rd.u32()
	if rd.err != nil {
		return nil, false, rd.err
	}
	typ, _, hp, err := rc.readFrame()
	if err != nil {
		return nil, false, err
	}
	if typ != frameHeader {
		return nil, false, fmt.Errorf("%w: expected a content header, got frame type %d", errRawProtocol, typ)
	}
	size, err := decodeContentHeader(hp, m)
	if err != nil {
		m.parseErr = err
	}
	body := make([]byte, 0, min(size, 1<<20))
	for uint64(len(body)) < size {
		typ, _, bp, err := rc.readFrame()
		if err != nil {
			return nil, false, err
		}
		if typ != frameBody {
			return nil, false, fmt.Errorf("%w: expected a body frame, got type %d", errRawProtocol, typ)
		}
		body = append(body, bp...)
	}
	m.raw.Body = body
	m.raw.Exchange, m.raw.RoutingKey, m.raw.Redelivered = m.exchange, m.routingKey, m.redelivered
	return m, true, nil
}

func (rc *rawConn) ack(tag uint64) error {
	var w wbuf
	w.u16(60)
	w.u16(80)
	w.u64(tag)
	w.u8(0)
	return rc.send(frameMethod, rc.ch, w.b)
}

func (rc *rawConn) reject(tag uint64, requeue bool) error {
	var w wbuf
	w.u16(60)
	w.u16(90)
	w.u64(tag)
	if requeue {
		w.u8(1)
	} else {
		w.u8(0)
	}
	return rc.send(frameMethod, rc.ch, w.b)
}

// publish sends a message with the header table written in the given order
// and with py-amqp's field types (see wbuf.field). No confirm is awaited.
func (rc *rawConn) publish(exchange, key string, m *protocol.RawMessage, headers protocol.Dict) error {
	if err := rc.openChannel(); err != nil {
		return err
	}
	var w wbuf
	w.u16(60)
	w.u16(40)
	w.u16(0)
	w.shortstr(exchange)
	w.shortstr(key)
	w.u8(0)
	if err := rc.send(frameMethod, rc.ch, w.b); err != nil {
		return err
	}
	hp, err := encodeContentHeader(m, headers, uint64(len(m.Body)))
	if err != nil {
		return err
	}
	if err := rc.send(frameHeader, rc.ch, hp); err != nil {
		return err
	}
	max := int(rc.frameMax) - 8
	for b := m.Body; len(b) > 0; {
		n := min(len(b), max)
		if err := rc.send(frameBody, rc.ch, b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// decodeContentHeader reads a content header frame into m.raw and returns
// the body size.
func decodeContentHeader(p []byte, m *rawMessage) (uint64, error) {
	rd := rbuf{b: p}
	_ = rd.u16() // class
	_ = rd.u16() // weight
	size := rd.u64()
	flags := rd.u16()
	if rd.err != nil {
		return 0, rd.err
	}
	if flags&1 != 0 {
		return size, fmt.Errorf("%w: property flag continuation not supported", errRawProtocol)
	}
	r := &m.raw
	if flags&(1<<15) != 0 {
		r.ContentType = rd.shortstr()
	}
	if flags&(1<<14) != 0 {
		r.ContentEncoding = rd.shortstr()
	}
	if flags&(1<<13) != 0 {
		var tags []byte
		h := rd.table(0, &tags)
		r.Headers = h
		for _, t := range tags {
			if !containsByte(amqp091Tags, t) && !containsByte(m.foreignTags, t) {
				m.foreignTags += string(t)
			}
		}
	}
	if flags&(1<<12) != 0 {
		r.DeliveryMode = rd.u8()
	}
	if flags&(1<<11) != 0 {
		r.Priority = rd.u8()
		r.HasPriority = true
	}
	if flags&(1<<10) != 0 {
		r.CorrelationID = rd.shortstr()
	}
	if flags&(1<<9) != 0 {
		r.ReplyTo = rd.shortstr()
	}
	if flags&(1<<8) != 0 {
		r.Expiration = rd.shortstr()
	}
	for bit := 7; bit >= 2; bit-- { // message-id, timestamp, type, user-id, app-id, cluster-id
		if flags&(1<<bit) == 0 {
			continue
		}
		if bit == 6 {
			_ = rd.u64()
		} else {
			_ = rd.shortstr()
		}
	}
	return size, rd.err
}

func containsByte(s string, b byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return true
		}
	}
	return false
}

// encodeContentHeader writes a basic content header as py-amqp does.
func encodeContentHeader(m *protocol.RawMessage, headers protocol.Dict, size uint64) ([]byte, error) {
	var w wbuf
	w.u16(60)
	w.u16(0)
	w.u64(size)
	var flags uint16
	var props wbuf
	if m.ContentType != "" {
		flags |= 1 << 15
		props.shortstr(m.ContentType)
	}
	if m.ContentEncoding != "" {
		flags |= 1 << 14
		props.shortstr(m.ContentEncoding)
	}
	if headers != nil {
		flags |= 1 << 13
		if err := props.table(headers, 0); err != nil {
			return nil, err
		}
	}
	if m.DeliveryMode != 0 {
		flags |= 1 << 12
		props.u8(m.DeliveryMode)
	}
	if m.HasPriority {
		flags |= 1 << 11
		props.u8(m.Priority)
	}
	if m.CorrelationID != "" {
		flags |= 1 << 10
		props.shortstr(m.CorrelationID)
	}
	if m.ReplyTo != "" {
		flags |= 1 << 9
		props.shortstr(m.ReplyTo)
	}
	if m.Expiration != "" {
		flags |= 1 << 8
		props.shortstr(m.Expiration)
	}
	w.u16(flags)
	w.b = append(w.b, props.b...)
	return w.b, props.err
}

// rbuf decodes AMQP wire types; the first error sticks.
type rbuf struct {
	b   []byte
	err error
}

func (r *rbuf) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.err = fmt.Errorf("%w: truncated frame", errRawProtocol)
		r.b = nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *rbuf) u8() uint8 {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *rbuf) u16() uint16 {
	if b := r.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *rbuf) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *rbuf) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *rbuf) shortstr() string { return string(r.take(int(r.u8()))) }

func (r *rbuf) longstr() []byte {
	n := r.u32()
	if uint64(n) > uint64(len(r.b)) {
		r.take(len(r.b) + 1)
		return nil
	}
	return r.take(int(n))
}

// table decodes a field table into protocol values, appending every field
// type tag it meets to tags.
func (r *rbuf) table(depth int, tags *[]byte) map[string]any {
	data := r.longstr()
	if r.err != nil {
		return nil
	}
	if depth > maxHeaderDepth {
		r.err = fmt.Errorf("%w: header table nested deeper than %d", errRawProtocol, maxHeaderDepth)
		return nil
	}
	sub := rbuf{b: data}
	out := map[string]any{}
	for len(sub.b) > 0 && sub.err == nil {
		k := sub.shortstr()
		v := sub.field(depth, tags)
		out[k] = v
	}
	if sub.err != nil {
		r.err = sub.err
	}
	return out
}

func (r *rbuf) field(depth int, tags *[]byte) any {
	tag := r.u8()
	if r.err != nil {
		return nil
	}
	*tags = append(*tags, tag)
	switch tag {
	case 't':
		return r.u8() != 0
	case 'b':
		return int64(int8(r.u8()))
	case 'B':
		return int64(r.u8())
	case 's', 'U':
		return int64(int16(r.u16()))
	case 'u':
		return int64(r.u16())
	case 'I':
		return int64(int32(r.u32()))
	case 'i':
		return int64(r.u32())
	case 'L', 'l':
		return int64(r.u64())
	case 'f':
		return float64(math.Float32frombits(r.u32()))
	case 'd':
		return math.Float64frombits(r.u64())
	case 'D':
		scale := r.u8()
		v := int32(r.u32())
		return decimalString(amqp.Decimal{Scale: scale, Value: v})
	case 'S':
		return string(r.longstr())
	case 'x':
		return append([]byte(nil), r.longstr()...)
	case 'T':
		return time.Unix(int64(r.u64()), 0).UTC()
	case 'V':
		return nil
	case 'F':
		return r.table(depth+1, tags)
	case 'A':
		data := r.longstr()
		if r.err != nil {
			return nil
		}
		if depth > maxHeaderDepth {
			r.err = fmt.Errorf("%w: header array nested deeper than %d", errRawProtocol, maxHeaderDepth)
			return nil
		}
		sub := rbuf{b: data}
		arr := []any{}
		for len(sub.b) > 0 && sub.err == nil {
			arr = append(arr, sub.field(depth+1, tags))
		}
		if sub.err != nil {
			r.err = sub.err
		}
		return arr
	}
	r.err = fmt.Errorf("%w: unknown header field type %q", errRawProtocol, tag)
	return nil
}

// wbuf encodes AMQP wire types.
type wbuf struct {
	b   []byte
	err error
}

func (w *wbuf) u8(v uint8)   { w.b = append(w.b, v) }
func (w *wbuf) u16(v uint16) { w.b = binary.BigEndian.AppendUint16(w.b, v) }
func (w *wbuf) u32(v uint32) { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *wbuf) u64(v uint64) { w.b = binary.BigEndian.AppendUint64(w.b, v) }

func (w *wbuf) shortstr(s string) {
	if len(s) > 255 {
		w.err = fmt.Errorf("%w: short string of %d bytes", ErrInvalidMessage, len(s))
		s = s[:255]
	}
	w.u8(uint8(len(s)))
	w.b = append(w.b, s...)
}

func (w *wbuf) longstr(s string) {
	w.u32(uint32(len(s)))
	w.b = append(w.b, s...)
}

// table writes a field table with py-amqp's type choices: S for strings,
// t, d, I for ints in −2147483647..2147483647 and L for other ints, V, A, F,
// T.
func (w *wbuf) table(d protocol.Dict, depth int) error {
	var sub wbuf
	for _, it := range d {
		sub.shortstr(it.Key)
		if err := sub.field(it.Value, depth+1); err != nil {
			return err
		}
	}
	if sub.err != nil {
		return sub.err
	}
	w.u32(uint32(len(sub.b)))
	w.b = append(w.b, sub.b...)
	return nil
}

func (w *wbuf) field(v any, depth int) error {
	if depth > maxHeaderDepth {
		return fmt.Errorf("%w: nested deeper than %d", ErrInvalidMessage, maxHeaderDepth)
	}
	switch x := v.(type) {
	case nil:
		w.u8('V')
	case string:
		w.u8('S')
		w.longstr(x)
	case []byte:
		w.u8('S')
		w.longstr(string(x))
	case bool:
		w.u8('t')
		if x {
			w.u8(1)
		} else {
			w.u8(0)
		}
	case float64:
		w.u8('d')
		w.u64(math.Float64bits(x))
	case int:
		return w.field(int64(x), depth)
	case int64:
		if x >= -2147483647 && x <= 2147483647 {
			w.u8('I')
			w.u32(uint32(int32(x)))
		} else {
			w.u8('L')
			w.u64(uint64(x))
		}
	case time.Time:
		w.u8('T')
		w.u64(uint64(x.Unix()))
	case []any:
		var sub wbuf
		for _, e := range x {
			if err := sub.field(e, depth+1); err != nil {
				return err
			}
		}
		w.u8('A')
		w.u32(uint32(len(sub.b)))
		w.b = append(w.b, sub.b...)
	case protocol.Dict:
		w.u8('F')
		return w.table(x, depth)
	case map[string]any:
		d := make(protocol.Dict, 0, len(x))
		for k, e := range x {
			d = append(d, protocol.Item{Key: k, Value: e})
		}
		w.u8('F')
		return w.table(d, depth)
	default:
		return fmt.Errorf("%w: unsupported header type %T", ErrInvalidMessage, v)
	}
	return nil
}

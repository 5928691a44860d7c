// Package rawamqp is a minimal AMQP 0-9-1 client, independent of
// amqp091-go, used only by amqptransport's quarantine sweep: it can read
// every field type of a header table, including the 'L' (signed 64-bit)
// that py-amqp writes and amqp091-go cannot decode, and republish such a
// message with every property kept and its header table made readable.
// It supports PLAIN authentication, one channel at a time, basic.get,
// basic.ack, basic.reject and confirmed basic.publish.
package rawamqp

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

// Errors of the client.
var (
	// ErrProtocol is wrapped by errors of the connection and of frames
	// that cannot be read.
	ErrProtocol = errors.New("rawamqp: AMQP protocol error")
	// ErrInvalidMessage is wrapped by errors of messages that cannot be
	// written.
	ErrInvalidMessage = errors.New("rawamqp: invalid message")
)

// MaxHeaderDepth bounds the nesting of header tables and arrays read and
// written.
const MaxHeaderDepth = 64

// amqp091Tags are the field types amqp091-go v1.16 can decode.
const amqp091Tags = "tBbsIluifdDSATFxV"

// Conn is a connection with at most one open channel. It is not safe for
// concurrent use.
type Conn struct {
	c        net.Conn
	r        *bufio.Reader
	frameMax uint32
	ch       uint16 // open channel, 0 if none
	nextCh   uint16
	confirm  bool   // the open channel is in confirm mode
	pubSeq   uint64 // publishes on the open channel in confirm mode
}

// Message is a message fetched with basic.get.
type Message struct {
	Tag         uint64
	Redelivered bool
	Exchange    string
	RoutingKey  string
	Remaining   uint32 // message-count of basic.get-ok
	// Raw is the message with its header table decoded ('D' decimals as
	// strings, every integer as int64).
	Raw protocol.RawMessage
	// Props are the properties RawMessage has no field for.
	Props Properties
	// ForeignTags lists the header field types amqp091-go cannot decode.
	ForeignTags string
	// ParseErr is set when the content header cannot be decoded at all.
	ParseErr error
	// header is the content header frame as delivered, for Republish.
	header []byte
}

// Properties are the basic properties beyond protocol.RawMessage's.
type Properties struct {
	MessageID string
	Timestamp time.Time // zero when absent
	Type      string
	UserID    string
	AppID     string
	ClusterID string
}

// Dial connects and logs in with PLAIN. Cancelling ctx interrupts the
// handshake.
func Dial(ctx context.Context, uri amqp.URI, connName string, timeout time.Duration) (*Conn, error) {
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
		return nil, fmt.Errorf("%w: dial %s: %v", ErrProtocol, addr, err)
	}
	rc := &Conn{c: c, r: bufio.NewReaderSize(c, 64<<10), frameMax: 131072, nextCh: 1}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := rc.handshake(uri, connName, timeout); err != nil {
		c.Close()
		return nil, err
	}
	return rc, nil
}

// Deadline makes every read and write fail after timeout from now.
func (rc *Conn) Deadline(timeout time.Duration) { _ = rc.c.SetDeadline(time.Now().Add(timeout)) }

// Interrupt makes every pending and later read or write fail at once.
func (rc *Conn) Interrupt() { _ = rc.c.SetDeadline(time.Unix(1, 0)) }

func (rc *Conn) handshake(uri amqp.URI, connName string, timeout time.Duration) error {
	rc.Deadline(timeout)
	if _, err := rc.c.Write([]byte("AMQP\x00\x00\x09\x01")); err != nil {
		return fmt.Errorf("%w: %v", ErrProtocol, err)
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

func (rc *Conn) send(typ byte, ch uint16, payload []byte) error {
	hdr := make([]byte, 7, 7+len(payload)+1)
	hdr[0] = typ
	binary.BigEndian.PutUint16(hdr[1:], ch)
	binary.BigEndian.PutUint32(hdr[3:], uint32(len(payload)))
	buf := append(append(hdr, payload...), frameEnd)
	if _, err := rc.c.Write(buf); err != nil {
		return fmt.Errorf("%w: write: %v", ErrProtocol, err)
	}
	return nil
}

// readFrame reads one frame, skipping heartbeats.
func (rc *Conn) readFrame() (typ byte, ch uint16, payload []byte, err error) {
	for {
		var h [7]byte
		if _, err := io.ReadFull(rc.r, h[:]); err != nil {
			return 0, 0, nil, fmt.Errorf("%w: read: %v", ErrProtocol, err)
		}
		size := binary.BigEndian.Uint32(h[3:])
		if size > rc.frameMax+8 && size > 1<<20 {
			return 0, 0, nil, fmt.Errorf("%w: frame of %d bytes exceeds frame_max %d", ErrProtocol, size, rc.frameMax)
		}
		payload = make([]byte, size+1)
		if _, err := io.ReadFull(rc.r, payload); err != nil {
			return 0, 0, nil, fmt.Errorf("%w: read: %v", ErrProtocol, err)
		}
		if payload[size] != frameEnd {
			return 0, 0, nil, fmt.Errorf("%w: bad frame end", ErrProtocol)
		}
		if h[0] == frameHeartbeat {
			continue
		}
		return h[0], binary.BigEndian.Uint16(h[1:]), payload[:size], nil
	}
}

// readMethod reads the next method frame; a connection.close or
// channel.close from the broker is answered and returned as *amqp.Error.
func (rc *Conn) readMethod() (ch, class, method uint16, args []byte, err error) {
	typ, ch, p, err := rc.readFrame()
	if err != nil {
		return 0, 0, 0, nil, err
	}
	if typ != frameMethod || len(p) < 4 {
		return 0, 0, 0, nil, fmt.Errorf("%w: unexpected frame type %d", ErrProtocol, typ)
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

func (rc *Conn) expect(ch, class, method uint16) ([]byte, error) {
	gotCh, c, m, args, err := rc.readMethod()
	if err != nil {
		return nil, err
	}
	if gotCh != ch || c != class || m != method {
		return nil, fmt.Errorf("%w: expected method %d.%d on channel %d, got %d.%d on %d",
			ErrProtocol, class, method, ch, c, m, gotCh)
	}
	return args, nil
}

func (rc *Conn) openChannel() error {
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
	rc.confirm, rc.pubSeq = false, 0
	return nil
}

// closeChannel closes the open channel: the broker requeues every message
// fetched on it and not acknowledged.
func (rc *Conn) CloseChannel() error {
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

func (rc *Conn) Close() error {
	_ = rc.CloseChannel()
	rc.Deadline(5 * time.Second)
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
func (rc *Conn) Get(queue string) (*Message, bool, error) {
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
		return nil, false, fmt.Errorf("%w: unexpected method %d.%d after basic.get", ErrProtocol, class, method)
	}
	rd := rbuf{b: args}
	m := &Message{}
	m.Tag = rd.u64()
	m.Redelivered = rd.u8()&1 == 1
	m.Exchange = rd.shortstr()
	m.RoutingKey = rd.shortstr()
	m.Remaining = rd.u32()
	if rd.err != nil {
		return nil, false, rd.err
	}
	typ, _, hp, err := rc.readFrame()
	if err != nil {
		return nil, false, err
	}
	if typ != frameHeader {
		return nil, false, fmt.Errorf("%w: expected a content header, got frame type %d", ErrProtocol, typ)
	}
	m.header = hp
	size, err := decodeContentHeader(hp, m)
	if err != nil {
		m.ParseErr = err
	}
	body := make([]byte, 0, min(size, 1<<20))
	for uint64(len(body)) < size {
		typ, _, bp, err := rc.readFrame()
		if err != nil {
			return nil, false, err
		}
		if typ != frameBody {
			return nil, false, fmt.Errorf("%w: expected a body frame, got type %d", ErrProtocol, typ)
		}
		body = append(body, bp...)
	}
	m.Raw.Body = body
	m.Raw.Exchange, m.Raw.RoutingKey, m.Raw.Redelivered = m.Exchange, m.RoutingKey, m.Redelivered
	return m, true, nil
}

func (rc *Conn) Ack(tag uint64) error {
	var w wbuf
	w.u16(60)
	w.u16(80)
	w.u64(tag)
	w.u8(0)
	return rc.send(frameMethod, rc.ch, w.b)
}

func (rc *Conn) Reject(tag uint64, requeue bool) error {
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
func (rc *Conn) Publish(exchange, key string, m *protocol.RawMessage, headers protocol.Dict) error {
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
	return rc.sendContent(hp, m.Body)
}

// sendContent sends a content header frame and the body frames.
func (rc *Conn) sendContent(header, body []byte) error {
	if err := rc.send(frameHeader, rc.ch, header); err != nil {
		return err
	}
	max := int(rc.frameMax) - 8
	for b := body; len(b) > 0; {
		n := min(len(b), max)
		if err := rc.send(frameBody, rc.ch, b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// Republish publishes a copy of m, fetched by Get, and waits for the
// broker's confirm. The copy has m's body and every property of m exactly
// as delivered (message-id, timestamp, type, user-id, app-id, cluster-id,
// expiration, priority, ...) and every header with its field type, except
// the two types amqp091-go cannot decode, rewritten to the type closest in
// meaning that it and py-amqp both read with the same value: 'U' (signed
// 16-bit) becomes 's', a non-negative 'L' (signed 64-bit) becomes 'l', a
// negative one 'd' (float64) when exact, else its decimal string 'S'.
func (rc *Conn) Republish(exchange, key string, m *Message) error {
	if m.ParseErr != nil || m.header == nil {
		return fmt.Errorf("%w: the message has no readable content header", ErrInvalidMessage)
	}
	hp, err := ReadableHeader(m.header)
	if err != nil {
		return err
	}
	if err := rc.openChannel(); err != nil {
		return err
	}
	if !rc.confirm {
		var w wbuf
		w.u16(85) // confirm.select
		w.u16(10)
		w.u8(0)
		if err := rc.send(frameMethod, rc.ch, w.b); err != nil {
			return err
		}
		if _, err := rc.expect(rc.ch, 85, 11); err != nil {
			return err
		}
		rc.confirm, rc.pubSeq = true, 0
	}
	var w wbuf
	w.u16(60)
	w.u16(40)
	w.u16(0)
	w.shortstr(exchange)
	w.shortstr(key)
	w.u8(0)
	if w.err != nil {
		return w.err
	}
	if err := rc.send(frameMethod, rc.ch, w.b); err != nil {
		return err
	}
	if err := rc.sendContent(hp, m.Raw.Body); err != nil {
		return err
	}
	rc.pubSeq++
	for {
		_, class, method, args, err := rc.readMethod()
		if err != nil {
			return err
		}
		rd := rbuf{b: args}
		tag := rd.u64()
		multiple := rd.u8()&1 == 1
		switch {
		case class == 60 && method == 80: // basic.ack
			if tag == rc.pubSeq || (multiple && tag >= rc.pubSeq) {
				return nil
			}
		case class == 60 && method == 120: // basic.nack
			return fmt.Errorf("%w: the broker refused the republished message", ErrProtocol)
		default:
			return fmt.Errorf("%w: unexpected method %d.%d while waiting for a confirm", ErrProtocol, class, method)
		}
	}
}

// ReadableHeader returns a copy of a content header frame payload whose
// header table amqp091-go can decode (see Republish for the rewrites);
// everything else is copied byte for byte.
func ReadableHeader(p []byte) ([]byte, error) {
	rd := rbuf{b: p}
	rd.take(12) // class, weight, body size
	flags := rd.u16()
	if rd.err != nil {
		return nil, rd.err
	}
	if flags&1 != 0 {
		return nil, fmt.Errorf("%w: property flag continuation not supported", ErrProtocol)
	}
	if flags&(1<<15) != 0 {
		rd.shortstr()
	}
	if flags&(1<<14) != 0 {
		rd.shortstr()
	}
	if rd.err != nil || flags&(1<<13) == 0 {
		return append([]byte(nil), p...), rd.err
	}
	start := len(p) - len(rd.b)
	table := rd.longstr()
	if rd.err != nil {
		return nil, rd.err
	}
	end := len(p) - len(rd.b)
	var w wbuf
	w.b = append(w.b, p[:start]...)
	nt, err := readableFields(table, 0, true)
	if err != nil {
		return nil, err
	}
	w.u32(uint32(len(nt)))
	w.b = append(w.b, nt...)
	w.b = append(w.b, p[end:]...)
	return w.b, nil
}

// readableFields rewrites the fields of a table (keyed) or an array.
func readableFields(data []byte, depth int, keyed bool) ([]byte, error) {
	if depth > MaxHeaderDepth {
		return nil, fmt.Errorf("%w: header table nested deeper than %d", ErrProtocol, MaxHeaderDepth)
	}
	rd := rbuf{b: data}
	var w wbuf
	for len(rd.b) > 0 && rd.err == nil {
		if keyed {
			k := rd.take(int(rd.u8()))
			if rd.err != nil {
				break
			}
			w.u8(uint8(len(k)))
			w.b = append(w.b, k...)
		}
		tag := rd.u8()
		if rd.err != nil {
			break
		}
		var n int
		switch tag {
		case 'V':
			n = 0
		case 't', 'b', 'B':
			n = 1
		case 's', 'u':
			n = 2
		case 'U':
			w.u8('s')
			w.b = append(w.b, rd.take(2)...)
			continue
		case 'I', 'i', 'f':
			n = 4
		case 'D':
			n = 5
		case 'l', 'd', 'T':
			n = 8
		case 'L':
			v := int64(rd.u64())
			switch {
			case v >= 0:
				w.u8('l')
				w.u64(uint64(v))
			case v >= -(1 << 53):
				w.u8('d')
				w.u64(math.Float64bits(float64(v)))
			default:
				w.u8('S')
				w.longstr(strconv.FormatInt(v, 10))
			}
			continue
		case 'S', 'x':
			b := rd.longstr()
			w.u8(tag)
			w.u32(uint32(len(b)))
			w.b = append(w.b, b...)
			continue
		case 'F', 'A':
			b := rd.longstr()
			if rd.err != nil {
				break
			}
			sub, err := readableFields(b, depth+1, tag == 'F')
			if err != nil {
				return nil, err
			}
			w.u8(tag)
			w.u32(uint32(len(sub)))
			w.b = append(w.b, sub...)
			continue
		default:
			return nil, fmt.Errorf("%w: unknown header field type %q", ErrProtocol, tag)
		}
		w.u8(tag)
		w.b = append(w.b, rd.take(n)...)
	}
	if rd.err != nil {
		return nil, rd.err
	}
	return w.b, nil
}

// decodeContentHeader reads a content header frame into m.Raw and m.Props
// and returns the body size.
func decodeContentHeader(p []byte, m *Message) (uint64, error) {
	rd := rbuf{b: p}
	_ = rd.u16() // class
	_ = rd.u16() // weight
	size := rd.u64()
	flags := rd.u16()
	if rd.err != nil {
		return 0, rd.err
	}
	if flags&1 != 0 {
		return size, fmt.Errorf("%w: property flag continuation not supported", ErrProtocol)
	}
	r := &m.Raw
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
			if !containsByte(amqp091Tags, t) && !containsByte(m.ForeignTags, t) {
				m.ForeignTags += string(t)
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
	pr := &m.Props
	if flags&(1<<7) != 0 {
		pr.MessageID = rd.shortstr()
	}
	if flags&(1<<6) != 0 {
		pr.Timestamp = time.Unix(int64(rd.u64()), 0).UTC()
	}
	if flags&(1<<5) != 0 {
		pr.Type = rd.shortstr()
	}
	if flags&(1<<4) != 0 {
		pr.UserID = rd.shortstr()
	}
	if flags&(1<<3) != 0 {
		pr.AppID = rd.shortstr()
	}
	if flags&(1<<2) != 0 {
		pr.ClusterID = rd.shortstr()
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

// DecimalString renders an AMQP decimal exactly, as Python's str(Decimal)
// does for plain values: Value·10^-Scale.
func DecimalString(d amqp.Decimal) string {
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
		r.err = fmt.Errorf("%w: truncated frame", ErrProtocol)
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
	if depth > MaxHeaderDepth {
		r.err = fmt.Errorf("%w: header table nested deeper than %d", ErrProtocol, MaxHeaderDepth)
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
		return DecimalString(amqp.Decimal{Scale: scale, Value: v})
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
		if depth > MaxHeaderDepth {
			r.err = fmt.Errorf("%w: header array nested deeper than %d", ErrProtocol, MaxHeaderDepth)
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
	r.err = fmt.Errorf("%w: unknown header field type %q", ErrProtocol, tag)
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
	if depth > MaxHeaderDepth {
		return fmt.Errorf("%w: nested deeper than %d", ErrInvalidMessage, MaxHeaderDepth)
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

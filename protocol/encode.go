package protocol

import (
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// EncodeOptions configures Encode.
type EncodeOptions struct {
	// Serializer is "json" (default) or "msgpack".
	Serializer string
	// Compression is "" or "zlib" (header application/x-gzip, zlib stream).
	Compression string
	// Now returns the current time, used for the expiration property when
	// the message expires; nil means time.Now.
	Now func() time.Time
}

// standardHeaders are the 16 headers of a protocol 2 message, in Celery's
// order, plus the compression header Encode sets itself.
var standardHeaders = []string{"lang", "task", "id", "shadow", "eta", "expires", "group",
	"group_index", "retries", "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr",
	"origin", "ignore_result"}

// Encode builds a protocol 2 message as Celery 5.2.6 publishes it.
//
// Headers: the 16 headers Celery always sends. lang defaults to "py",
// root_id to the task id, argsrepr/kwargsrepr to ArgsRepr/KwargsRepr of the
// arguments; empty optional strings are null; eta and expires use
// FormatTime; integral time limits are written as integers, as Python
// does. Custom keys of m.Headers are added, except the 16 standard ones
// and "compression": those always come from the fields of m, so a decoded
// message can be re-encoded after changing them. Custom header values are
// converted by HeaderValue.
//
// Properties: content type and encoding of the serializer, delivery mode
// 2, the priority (0 unless m.HasPriority), correlation id = task id,
// reply_to, and, when m.Expires is set, the expiration in milliseconds
// from now ("0" when already past).
//
// Body: [args, kwargs, {"callbacks", "errbacks", "chain", "chord"}] with
// empty embed entries as null, byte-identical to Python's for JSON.
func Encode(m *Message, opts EncodeOptions) (*RawMessage, error) {
	if m == nil {
		return nil, errors.New("protocol: Encode of a nil message")
	}
	if err := CheckID(m.ID); err != nil {
		return nil, fmt.Errorf("protocol: task %w", err)
	}
	if m.GroupID != "" {
		if err := CheckID(m.GroupID); err != nil {
			return nil, fmt.Errorf("protocol: group %w", err)
		}
	}
	if m.Task == "" {
		return nil, errors.New("protocol: the task name is empty")
	}
	raw := &RawMessage{
		DeliveryMode:  2,
		Priority:      m.Priority,
		HasPriority:   true,
		CorrelationID: m.ID,
		ReplyTo:       m.ReplyTo,
	}

	// Body.
	args := m.Args
	if args == nil {
		args = []any{}
	}
	kwargs := m.Kwargs
	if kwargs == nil {
		kwargs = map[string]any{}
	}
	var chord any
	if m.Chord != nil {
		chord = m.Chord.Value()
	}
	body := []any{args, kwargs, Dict{
		{"callbacks", sigList(m.Callbacks)},
		{"errbacks", sigList(m.Errbacks)},
		{"chain", sigList(m.Chain)},
		{"chord", chord},
	}}
	var err error
	switch opts.Serializer {
	case "", "json", ContentTypeJSON:
		raw.ContentType, raw.ContentEncoding = ContentTypeJSON, "utf-8"
		raw.Body, err = MarshalJSON(body)
	case "msgpack", ContentTypeMsgpack:
		raw.ContentType, raw.ContentEncoding = ContentTypeMsgpack, "binary"
		raw.Body, err = marshalMsgpack(body)
	default:
		return nil, fmt.Errorf("protocol: unsupported serializer %q", opts.Serializer)
	}
	if err != nil {
		return nil, fmt.Errorf("protocol: encoding the body of task %s: %w", m.ID, err)
	}

	// Headers.
	h := make(map[string]any, len(standardHeaders)+len(m.Headers)+1)
	for k, v := range m.Headers {
		if isStandardHeader(k) {
			continue
		}
		sv, err := HeaderValue(v)
		if err != nil {
			return nil, fmt.Errorf("protocol: header %q: %w", k, err)
		}
		h[k] = sv
	}
	lang := m.Lang
	if lang == "" {
		lang = "py"
	}
	rootID := m.RootID
	if rootID == "" {
		rootID = m.ID
	}
	argsRepr := m.ArgsRepr
	if argsRepr == "" {
		argsRepr = ArgsRepr(args)
	}
	kwargsRepr := m.KwargsRepr
	if kwargsRepr == "" {
		kwargsRepr = KwargsRepr(kwargs)
	}
	h["lang"] = lang
	h["task"] = m.Task
	h["id"] = m.ID
	h["shadow"] = nullable(m.Shadow)
	h["eta"] = timeOrNil(m.ETA)
	h["expires"] = timeOrNil(m.Expires)
	h["group"] = nullable(m.GroupID)
	if m.GroupIndex != nil {
		h["group_index"] = int64(*m.GroupIndex)
	} else {
		h["group_index"] = nil
	}
	h["retries"] = int64(m.Retries)
	h["timelimit"] = []any{limitValue(m.TimeLimit), limitValue(m.SoftTimeLimit)}
	h["root_id"] = rootID
	h["parent_id"] = nullable(m.ParentID)
	h["argsrepr"] = argsRepr
	h["kwargsrepr"] = kwargsRepr
	h["origin"] = m.Origin
	h["ignore_result"] = m.IgnoreResult
	raw.Headers = h

	if m.Expires != nil {
		now := time.Now
		if opts.Now != nil {
			now = opts.Now
		}
		ms := m.Expires.Sub(now()).Milliseconds()
		if ms < 0 {
			ms = 0
		}
		raw.Expiration = strconv.FormatInt(ms, 10)
	}

	switch opts.Compression {
	case "":
	case "zlib", "gzip", CompressionZlib:
		var buf bytes.Buffer
		w := zlib.NewWriter(&buf)
		if _, err := w.Write(raw.Body); err != nil {
			return nil, fmt.Errorf("protocol: compressing: %w", err)
		}
		if err := w.Close(); err != nil {
			return nil, fmt.Errorf("protocol: compressing: %w", err)
		}
		raw.Body = buf.Bytes()
		h["compression"] = CompressionZlib
	default:
		return nil, fmt.Errorf("protocol: unsupported compression %q", opts.Compression)
	}
	return raw, nil
}

func isStandardHeader(k string) bool {
	if k == "compression" {
		return true
	}
	for _, s := range standardHeaders {
		if s == k {
			return true
		}
	}
	return false
}

func sigList(s []Signature) any {
	if len(s) == 0 {
		return nil
	}
	out := make([]any, len(s))
	for i := range s {
		out[i] = s[i].Value()
	}
	return out
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func timeOrNil(t *time.Time) any {
	if t == nil {
		return nil
	}
	return FormatTime(*t)
}

// limitValue writes a time limit as Python sent it: an int when integral.
func limitValue(f *float64) any {
	if f == nil {
		return nil
	}
	if *f == math.Trunc(*f) && math.Abs(*f) < 1<<53 {
		return int64(*f)
	}
	return *f
}

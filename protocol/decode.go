package protocol

import (
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// DecodeOptions configures Decode. The zero value accepts JSON only and
// caps bodies at DefaultMaxBodySize.
type DecodeOptions struct {
	// Accept lists accepted content types, as MIME types
	// ("application/json") or serializer names ("json", "msgpack"); empty
	// means JSON only. Only JSON and msgpack can be accepted: pickle, yaml,
	// application/data, application/text and any other type are always
	// refused with ErrContentDisallowed.
	Accept []string
	// MaxBodySize caps the body after decompression (0: DefaultMaxBodySize).
	MaxBodySize int
	// MaxValues caps the values (scalars, lists and maps) a body decodes
	// to (0: DefaultMaxValues; negative: no cap), so that a body within
	// MaxBodySize cannot expand into far more memory: "[0,0,...]" costs
	// tens of bytes of Go values per two bytes of JSON.
	MaxValues int
}

// DefaultMaxBodySize is the default cap of a decompressed body: 16 MiB.
const DefaultMaxBodySize = 16 << 20

// DefaultMaxValues is the default cap of the values a body decodes to:
// 2,097,152, about 100 MiB of Go values at most.
const DefaultMaxValues = 1 << 21

// errTooManyValues: a body decodes to more than MaxValues values.
var errTooManyValues = errors.New("more values than the limit")

// MaxTaskIDLen is the longest task id Decode accepts, in bytes.
const MaxTaskIDLen = 255

// Compression header values (kombu names them by MIME type).
const (
	CompressionZlib  = "application/x-gzip" // a zlib stream, despite the name
	CompressionBzip2 = "application/x-bz2"
)

// Decode turns a delivered message into a task, whatever the protocol,
// dispatching as a Celery 5.2.6 worker does:
//
//   - a "task" header means protocol 2: the body must be [args, kwargs,
//     embed], or an object with "args" (a hybrid message: the body's v1
//     fields are read first, then the headers override them);
//   - otherwise a body object with a "task" key is protocol 1;
//   - anything else is ErrUnknownMessage (an absent header table is an
//     empty one).
//
// The body is decompressed when the "compression" header is set
// (application/x-gzip is a zlib stream; real gzip, recognised by its magic
// bytes, and application/x-bz2 also work), with at most MaxBodySize bytes
// inflated (ErrTooLarge beyond). Its content type must be accepted (see
// DecodeOptions); an empty content type, which Celery treats as raw
// application/data, is ErrContentDisallowed.
//
// Validation is strict where Celery would crash or silently misbehave:
// the v2 body must have exactly 3 elements, args must be a list, kwargs an
// object, embed an object or null with well-formed signatures; the id must
// be a non-empty printable string of at most MaxTaskIDLen bytes and the
// task name a non-empty string; eta and expires must be ISO 8601 strings
// or null (a naive time is UTC, an empty string is null); timelimit must be
// null or a pair of non-negative numbers or nulls; group_index an integer
// or null; ignore_result a bool. It is lenient where Celery is and the
// task can still run: retries that are not an integer count as 0, and the
// informational lang, origin, argsrepr and kwargsrepr headers are ignored
// when they are not strings. Protocol 1's utc flag is ignored (naive times
// are always UTC) and its taskset field is read as group.
//
// Errors are *DecodeError wrapping one of ErrContentDisallowed,
// ErrUnknownMessage, ErrDecode, ErrInvalidTask or ErrTooLarge, with the
// task id and name filled in when they could be read. Decode never panics.
func Decode(raw *RawMessage, opts DecodeOptions) (*Message, error) {
	if raw == nil {
		return nil, decodeErr(ErrUnknownMessage, "nil-message", nil)
	}
	hdrs := raw.Headers
	taskHdr, v2 := hdrs["task"]
	var known DecodeError
	if v2 {
		known.ID = validID(hdrs["id"])
		known.Task, _ = taskHdr.(string)
	}
	fail := func(kind error, reason string, err error) *DecodeError {
		return &DecodeError{Kind: kind, Reason: reason, ID: known.ID, Task: known.Task, Err: err}
	}

	body, size, derr := decodeBody(raw, opts)
	if derr != nil {
		derr.ID, derr.Task = known.ID, known.Task
		return nil, derr
	}

	m := &Message{
		BodySize:        size,
		Headers:         hdrs,
		ReplyTo:         raw.ReplyTo,
		CorrelationID:   raw.CorrelationID,
		AppID:           raw.AppID,
		ContentType:     raw.ContentType,
		ContentEncoding: raw.ContentEncoding,
		Priority:        raw.Priority,
		HasPriority:     raw.HasPriority,
		Exchange:        raw.Exchange,
		RoutingKey:      raw.RoutingKey,
		Redelivered:     raw.Redelivered,
	}
	var fields map[string]any
	var embed map[string]any
	switch {
	case v2:
		m.Protocol = 2
		if bm, ok := body.(map[string]any); ok {
			if _, hybrid := bm["args"]; hybrid {
				fields = make(map[string]any, len(bm)+len(hdrs))
				for _, k := range hybridKeys {
					if v, ok := bm[k]; ok {
						fields[k] = v
					}
				}
				for k, v := range hdrs {
					fields[k] = v
				}
				if err := bodyArgs(m, bm); err != nil {
					return nil, fail(ErrInvalidTask, err.Reason, err.Err)
				}
				embed = v1Embed(bm)
				break
			}
		}
		fields = hdrs
		list, ok := body.([]any)
		if !ok {
			return nil, fail(ErrInvalidTask, "body-not-list", fmt.Errorf("protocol 2 body is %s, not [args, kwargs, embed]", typeName(body)))
		}
		if len(list) != 3 {
			return nil, fail(ErrInvalidTask, "body-length", fmt.Errorf("protocol 2 body has %d elements, not 3", len(list)))
		}
		args, ok := list[0].([]any)
		if !ok {
			return nil, fail(ErrInvalidTask, "args-not-list", fmt.Errorf("args is %s", typeName(list[0])))
		}
		kwargs, ok := list[1].(map[string]any)
		if !ok {
			return nil, fail(ErrInvalidTask, "kwargs-not-object", fmt.Errorf("kwargs is %s", typeName(list[1])))
		}
		m.Args, m.Kwargs = args, kwargs
		switch e := list[2].(type) {
		case map[string]any:
			embed = e
		case nil:
		default:
			return nil, fail(ErrInvalidTask, "embed-not-object", fmt.Errorf("embed is %s", typeName(list[2])))
		}
	default:
		bm, ok := body.(map[string]any)
		if !ok {
			return nil, fail(ErrUnknownMessage, "no-task", fmt.Errorf("no task header and the body is %s", typeName(body)))
		}
		if _, ok := bm["task"]; !ok {
			return nil, fail(ErrUnknownMessage, "no-task", errors.New("no task header and no task in the body"))
		}
		m.Protocol = 1
		known.ID = validID(bm["id"])
		known.Task, _ = bm["task"].(string)
		fields = bm
		if ts, ok := bm["taskset"]; ok && ts != nil {
			fields = make(map[string]any, len(bm))
			for k, v := range bm {
				fields[k] = v
			}
			fields["group"] = ts
		}
		if err := bodyArgs(m, bm); err != nil {
			return nil, fail(ErrInvalidTask, err.Reason, err.Err)
		}
		embed = v1Embed(bm)
	}
	if v2 && fields != nil {
		known.ID = validID(fields["id"])
		known.Task, _ = fields["task"].(string)
	}
	if err := readFields(m, fields); err != nil {
		return nil, fail(ErrInvalidTask, err.Reason, err.Err)
	}
	if err := readEmbed(m, embed); err != nil {
		return nil, fail(ErrInvalidTask, err.Reason, err.Err)
	}
	if m.Protocol == 1 {
		// Celery computes these for protocol 1 from the body (a list repr).
		m.ArgsRepr = Repr(m.Args)
		m.KwargsRepr = Repr(m.Kwargs)
	}
	return m, nil
}

// hybridKeys are the body fields Celery's hybrid_to_proto2 reads.
var hybridKeys = []string{"lang", "task", "id", "root_id", "parent_id", "group", "shadow",
	"eta", "expires", "retries", "timelimit", "argsrepr", "kwargsrepr", "origin"}

type fieldError struct {
	Reason string
	Err    error
}

func ferr(reason, format string, args ...any) *fieldError {
	return &fieldError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// bodyArgs reads args and kwargs of a protocol 1 or hybrid body.
func bodyArgs(m *Message, bm map[string]any) *fieldError {
	switch a := bm["args"].(type) {
	case []any:
		m.Args = a
	default:
		if _, present := bm["args"]; present || a != nil {
			return ferr("args-not-list", "args is %s", typeName(a))
		}
		m.Args = []any{}
	}
	switch k := bm["kwargs"].(type) {
	case map[string]any:
		m.Kwargs = k
	default:
		if _, present := bm["kwargs"]; present || k != nil {
			return ferr("kwargs-not-object", "kwargs is %s", typeName(k))
		}
		m.Kwargs = map[string]any{}
	}
	return nil
}

func v1Embed(bm map[string]any) map[string]any {
	return map[string]any{"callbacks": bm["callbacks"], "errbacks": bm["errbacks"], "chord": bm["chord"]}
}

func readEmbed(m *Message, embed map[string]any) *fieldError {
	if embed == nil {
		return nil
	}
	var err error
	if m.Callbacks, err = signatureList(embed["callbacks"]); err != nil {
		return &fieldError{"bad-callbacks", err}
	}
	if m.Errbacks, err = signatureList(embed["errbacks"]); err != nil {
		return &fieldError{"bad-errbacks", err}
	}
	if m.Chain, err = signatureList(embed["chain"]); err != nil {
		return &fieldError{"bad-chain", err}
	}
	if c := embed["chord"]; c != nil {
		s, err := SignatureFromValue(c)
		if err != nil {
			return &fieldError{"bad-chord", err}
		}
		m.Chord = &s
	}
	return nil
}

func signatureList(v any) ([]Signature, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []any:
		if len(x) == 0 {
			return nil, nil
		}
		out := make([]Signature, len(x))
		for i, it := range x {
			s, err := SignatureFromValue(it)
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s, not a list of signatures", typeName(v))
}

// readFields reads the task fields from the header table (protocol 2),
// the merged table (hybrid) or the body (protocol 1).
func readFields(m *Message, h map[string]any) *fieldError {
	// id
	idv, ok := h["id"]
	if !ok || idv == nil {
		return ferr("missing-id", "the task id is missing")
	}
	id, ok := asString(idv)
	if !ok {
		return ferr("bad-id", "the task id is %s, not a string", typeName(idv))
	}
	if err := CheckID(id); err != nil {
		return &fieldError{"bad-id", err}
	}
	m.ID = id
	// task
	switch t := h["task"].(type) {
	case string:
		if t == "" {
			return ferr("bad-task", "the task name is empty")
		}
		m.Task = t
	case []byte:
		if !utf8.Valid(t) || len(t) == 0 {
			return ferr("bad-task", "the task name is not valid UTF-8 text")
		}
		m.Task = string(t)
	default:
		return ferr("bad-task", "the task name is %s, not a string", typeName(t))
	}
	var err *fieldError
	if m.Shadow, err = optString(h, "shadow"); err != nil {
		return err
	}
	if m.RootID, err = optString(h, "root_id"); err != nil {
		return err
	}
	if m.ParentID, err = optString(h, "parent_id"); err != nil {
		return err
	}
	if m.GroupID, err = optString(h, "group"); err != nil {
		return err
	}
	if m.GroupID != "" {
		// Group ids name result keys (celery-taskset-meta-<id>, chord
		// counters) as task ids do.
		if err := CheckID(m.GroupID); err != nil {
			return &fieldError{"bad-group", fmt.Errorf("group: %w", err)}
		}
	}
	if gi := h["group_index"]; gi != nil {
		n, ok := asInt(gi)
		if !ok || n < 0 || n > math.MaxInt32 {
			return ferr("bad-group_index", "group_index %s is not a non-negative integer", PyRepr(gi))
		}
		i := int(n)
		m.GroupIndex = &i
	}
	if m.ETA, err = optTime(h, "eta"); err != nil {
		return err
	}
	if m.Expires, err = optTime(h, "expires"); err != nil {
		return err
	}
	if n, ok := asInt(h["retries"]); ok && n > 0 && n <= math.MaxInt32 {
		m.Retries = int(n)
	}
	if tl := h["timelimit"]; tl != nil {
		pair, ok := tl.([]any)
		if !ok || len(pair) != 2 {
			return ferr("bad-timelimit", "timelimit %.64s is not a [hard, soft] pair", PyRepr(tl))
		}
		for i, dst := range []**float64{&m.TimeLimit, &m.SoftTimeLimit} {
			if pair[i] == nil {
				continue
			}
			f, ok := asNumber(pair[i])
			if !ok || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
				return ferr("bad-timelimit", "timelimit %.64s: %.32s is not a non-negative number", PyRepr(tl), PyRepr(pair[i]))
			}
			*dst = &f
		}
	}
	switch ir := h["ignore_result"].(type) {
	case nil:
	case bool:
		m.IgnoreResult = ir
	default:
		n, ok := asInt(ir)
		if !ok {
			return ferr("bad-ignore_result", "ignore_result is %s, not a bool", typeName(ir))
		}
		m.IgnoreResult = n != 0
	}
	m.Lang, _ = asString(h["lang"])
	m.Origin, _ = asString(h["origin"])
	m.ArgsRepr, _ = asString(h["argsrepr"])
	m.KwargsRepr, _ = asString(h["kwargsrepr"])
	return nil
}

// CheckID tells whether id may name a task or a group: 1 to MaxTaskIDLen
// bytes of printable UTF-8 (no control characters, no NUL, no line or
// paragraph separators). Result backends build keys from these ids, so
// nothing may be stored under an id that fails the check. The error wraps
// ErrInvalidID.
func CheckID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: the id is empty", ErrInvalidID)
	}
	if len(id) > MaxTaskIDLen {
		return fmt.Errorf("%w: the id is %d bytes long (at most %d)", ErrInvalidID, len(id), MaxTaskIDLen)
	}
	if !utf8.ValidString(id) {
		return fmt.Errorf("%w: the id is not valid UTF-8", ErrInvalidID)
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: the id %s has a non-printable character", ErrInvalidID, PyRepr(id))
		}
	}
	return nil
}

// validID returns v as an id when it is one CheckID accepts, else "".
func validID(v any) string {
	s, ok := asString(v)
	if !ok || CheckID(s) != nil {
		return ""
	}
	return s
}

func optString(h map[string]any, key string) (string, *fieldError) {
	v := h[key]
	if v == nil {
		return "", nil
	}
	s, ok := asString(v)
	if !ok {
		return "", ferr("bad-"+key, "%s is %s, not a string", key, typeName(v))
	}
	return s, nil
}

func optTime(h map[string]any, key string) (*time.Time, *fieldError) {
	switch x := h[key].(type) {
	case nil:
		return nil, nil
	case time.Time:
		t := x.UTC()
		return &t, nil
	case string, []byte:
		s, ok := asString(x)
		if !ok {
			return nil, ferr("bad-"+key, "invalid %s value: not UTF-8 text", key)
		}
		if s == "" {
			return nil, nil
		}
		t, err := ParseTime(s)
		if err != nil {
			return nil, &fieldError{"bad-" + key, fmt.Errorf("invalid %s value: %w", key, err)}
		}
		return &t, nil
	default:
		return nil, ferr("bad-"+key, "invalid %s value %.64s: expected an ISO 8601 string, got %s", key, PyRepr(x), typeName(x))
	}
}

// asString accepts a string, or bytes holding UTF-8 text (some transports
// deliver AMQP byte arrays).
func asString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case []byte:
		if utf8.Valid(x) {
			return string(x), true
		}
	}
	return "", false
}

// asInt accepts every integer kind and integral floats.
func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int:
		return int64(x), true
	case int32:
		return int64(x), true
	case int16:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), true
		}
	case uint:
		if uint64(x) <= math.MaxInt64 {
			return int64(x), true
		}
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x), true
		}
	case float32:
		return asInt(float64(x))
	case *big.Int:
		if x != nil && x.IsInt64() {
			return x.Int64(), true
		}
	}
	return 0, false
}

// asNumber accepts every integer and float kind.
func asNumber(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case bool:
		return 0, false
	case *big.Int:
		if x == nil {
			return 0, false
		}
		f, _ := new(big.Float).SetInt(x).Float64()
		return f, true
	}
	if n, ok := asInt(v); ok {
		return float64(n), true
	}
	return 0, false
}

// serializerTypes maps serializer names to MIME types.
var serializerTypes = map[string]string{
	"json":    ContentTypeJSON,
	"msgpack": ContentTypeMsgpack,
	"yaml":    ContentTypeYAML,
	"pickle":  ContentTypePickle,
}

func normalizeContentType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.ToLower(strings.TrimSpace(ct))
	if mime, ok := serializerTypes[ct]; ok {
		return mime
	}
	return ct
}

func accepts(opts DecodeOptions, ct string) bool {
	if len(opts.Accept) == 0 {
		return ct == ContentTypeJSON
	}
	for _, a := range opts.Accept {
		if normalizeContentType(a) == ct {
			return true
		}
	}
	return false
}

// decodeBody checks the content type, decompresses and deserializes; size
// is the body's size after decompression.
func decodeBody(raw *RawMessage, opts DecodeOptions) (v any, size int, derr *DecodeError) {
	ct := normalizeContentType(raw.ContentType)
	switch {
	case ct == "":
		return nil, 0, decodeErr(ErrContentDisallowed, "empty-content-type",
			errors.New("no content type (Celery reads it as raw application/data)"))
	case ct != ContentTypeJSON && ct != ContentTypeMsgpack, !accepts(opts, ct):
		return nil, 0, decodeErr(ErrContentDisallowed, "content-disallowed",
			fmt.Errorf("refusing to deserialize content of type %.64q", raw.ContentType))
	}
	limit := opts.MaxBodySize
	if limit <= 0 {
		limit = DefaultMaxBodySize
	}
	body := raw.Body
	if len(body) > limit {
		return nil, 0, decodeErr(ErrTooLarge, "body-too-large", fmt.Errorf("body of %d bytes (limit %d)", len(body), limit))
	}
	if c, present := raw.Headers["compression"]; present && c != nil {
		name, ok := asString(c)
		if !ok {
			return nil, 0, decodeErr(ErrDecode, "bad-compression", fmt.Errorf("compression header is %s", typeName(c)))
		}
		var err *DecodeError
		if body, err = decompress(name, body, limit); err != nil {
			return nil, 0, err
		}
	}
	if len(body) == 0 {
		return nil, 0, decodeErr(ErrDecode, "empty-body", errors.New("the body is empty"))
	}
	maxValues := opts.MaxValues
	switch {
	case maxValues == 0:
		maxValues = DefaultMaxValues
	case maxValues < 0:
		maxValues = 0
	}
	var err error
	reason := "bad-json"
	if ct == ContentTypeJSON {
		v, err = unmarshalJSONLimited(body, maxValues)
	} else {
		reason = "bad-msgpack"
		v, err = unmarshalMsgpackLimited(body, false, maxValues)
	}
	if errors.Is(err, errTooManyValues) {
		return nil, 0, decodeErr(ErrTooLarge, "too-many-values", fmt.Errorf("the body decodes to more than %d values", maxValues))
	}
	if err != nil {
		return nil, 0, decodeErr(ErrDecode, reason, err)
	}
	return v, len(body), nil
}

// decompress inflates body, reading at most limit bytes.
func decompress(name string, body []byte, limit int) ([]byte, *DecodeError) {
	var r io.Reader
	var err error
	switch strings.ToLower(strings.TrimSpace(name)) {
	case CompressionZlib, "zlib", "gzip", "application/gzip", "application/zlib":
		if len(body) >= 2 && body[0] == 0x1f && body[1] == 0x8b {
			r, err = gzip.NewReader(bytes.NewReader(body))
		} else {
			r, err = zlib.NewReader(bytes.NewReader(body))
		}
	case CompressionBzip2, "bzip2", "bz2":
		r = bzip2.NewReader(bytes.NewReader(body))
	default:
		return nil, decodeErr(ErrDecode, "unknown-compression", fmt.Errorf("unsupported compression %.64q", name))
	}
	if err != nil {
		return nil, decodeErr(ErrDecode, "bad-compression", err)
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, decodeErr(ErrDecode, "bad-compression", err)
	}
	if len(out) > limit {
		return nil, decodeErr(ErrTooLarge, "inflated-too-large", fmt.Errorf("body inflates beyond %d bytes", limit))
	}
	if c, ok := r.(io.Closer); ok {
		if err := c.Close(); err != nil {
			return nil, decodeErr(ErrDecode, "bad-compression", err)
		}
	}
	return out, nil
}

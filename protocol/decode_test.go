package protocol

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

var acceptAll = DecodeOptions{Accept: []string{"json", ContentTypeMsgpack}}

// fromSidecar turns the sidecar's JSON view of a decoded body into the
// values Decode gives: {"$bytes_base64": ...} stands for msgpack bin.
func fromSidecar(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = fromSidecar(x[i])
		}
		return out
	case map[string]any:
		if b64, ok := x["$bytes_base64"].(string); ok && len(x) == 1 {
			b, err := base64.StdEncoding.DecodeString(b64)
			if err != nil {
				panic(err)
			}
			return b
		}
		out := make(map[string]any, len(x))
		for k, it := range x {
			out[k] = fromSidecar(it)
		}
		return out
	}
	return v
}

// TestDecodeVectors decodes every captured message and checks the result
// against the sidecar: headers, body and properties.
func TestDecodeVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			raw := v.raw(t)
			ct := v.contentType()
			if ct == ContentTypePickle || ct == ContentTypeYAML {
				for _, opts := range []DecodeOptions{{}, acceptAll, {Accept: []string{"json", "yaml", "pickle"}}} {
					_, err := Decode(raw, opts)
					if !errors.Is(err, ErrContentDisallowed) {
						t.Fatalf("err = %v, want ErrContentDisallowed", err)
					}
					var de *DecodeError
					if !errors.As(err, &de) || de.ID != v.Headers["id"] || de.Task != v.Headers["task"] {
						t.Fatalf("DecodeError does not name the task: %#v", de)
					}
				}
				return
			}
			if ct == ContentTypeMsgpack {
				if _, err := Decode(raw, DecodeOptions{}); !errors.Is(err, ErrContentDisallowed) {
					t.Fatalf("msgpack with default options: %v", err)
				}
			}
			m, err := Decode(raw, acceptAll)
			if err != nil {
				t.Fatal(err)
			}
			bodyAny, err := UnmarshalJSON(v.BodyDecoded)
			if err != nil {
				t.Fatal(err)
			}
			body := fromSidecar(bodyAny)
			hdrs := raw.Headers

			// Properties.
			if m.CorrelationID != v.Properties["correlation_id"] || m.ReplyTo != v.Properties["reply_to"] {
				t.Errorf("properties: %q %q", m.CorrelationID, m.ReplyTo)
			}
			if p, ok := v.Properties["priority"].(float64); ok != m.HasPriority || (ok && uint8(p) != m.Priority) {
				t.Errorf("priority %d/%v, want %v", m.Priority, m.HasPriority, v.Properties["priority"])
			}
			if m.ContentType != ct || m.RoutingKey != v.DeliveryInfo.RoutingKey || m.Redelivered != v.DeliveryInfo.Redelivered {
				t.Errorf("delivery info: %q %q %v", m.ContentType, m.RoutingKey, m.Redelivered)
			}

			var fields map[string]any
			var embed map[string]any
			if len(v.Headers) == 0 { // protocol 1
				if m.Protocol != 1 {
					t.Fatalf("protocol %d", m.Protocol)
				}
				bm := body.(map[string]any)
				fields = bm
				embed = map[string]any{"callbacks": bm["callbacks"], "errbacks": bm["errbacks"], "chord": bm["chord"], "chain": nil}
				if !valueEqual(m.Args, bm["args"]) || !valueEqual(m.Kwargs, bm["kwargs"]) {
					t.Errorf("args %#v kwargs %#v", m.Args, m.Kwargs)
				}
				if m.ArgsRepr != Repr(bm["args"]) {
					t.Errorf("argsrepr %q", m.ArgsRepr)
				}
			} else {
				if m.Protocol != 2 {
					t.Fatalf("protocol %d", m.Protocol)
				}
				fields = hdrs
				list := body.([]any)
				embed = list[2].(map[string]any)
				if !valueEqual(m.Args, list[0]) || !valueEqual(m.Kwargs, list[1]) {
					t.Errorf("args %#v kwargs %#v, want %#v %#v", m.Args, m.Kwargs, list[0], list[1])
				}
				if !valueEqual(m.Headers, hdrs) {
					t.Errorf("headers not kept")
				}
				for k, want := range map[string]any{"argsrepr": m.ArgsRepr, "kwargsrepr": m.KwargsRepr, "origin": m.Origin, "lang": m.Lang} {
					if hdrs[k] != want {
						t.Errorf("%s = %q, header %q", k, want, hdrs[k])
					}
				}
			}
			if m.ID != fields["id"] || m.Task != fields["task"] {
				t.Errorf("id/task %q %q", m.ID, m.Task)
			}
			if !valueEqual(nullable(m.GroupID), fields["group"]) || !valueEqual(nullable(m.Shadow), fields["shadow"]) ||
				!valueEqual(nullable(m.ParentID), fields["parent_id"]) || !valueEqual(nullable(m.RootID), fields["root_id"]) {
				t.Errorf("group %q shadow %q parent %q root %q", m.GroupID, m.Shadow, m.ParentID, m.RootID)
			}
			var gi any
			if m.GroupIndex != nil {
				gi = int64(*m.GroupIndex)
			}
			if !valueEqual(gi, fields["group_index"]) {
				t.Errorf("group_index %v, want %v", gi, fields["group_index"])
			}
			if !valueEqual(int64(m.Retries), fields["retries"]) {
				t.Errorf("retries %d", m.Retries)
			}
			if !valueEqual(timeOrNil(m.ETA), fields["eta"]) || !valueEqual(timeOrNil(m.Expires), fields["expires"]) {
				t.Errorf("eta %v expires %v, want %v %v", m.ETA, m.Expires, fields["eta"], fields["expires"])
			}
			if !valueEqual([]any{limitValue(m.TimeLimit), limitValue(m.SoftTimeLimit)}, fields["timelimit"]) {
				t.Errorf("timelimit %v %v, want %v", m.TimeLimit, m.SoftTimeLimit, fields["timelimit"])
			}
			if ir, _ := fields["ignore_result"].(bool); ir != m.IgnoreResult {
				t.Errorf("ignore_result %v", m.IgnoreResult)
			}
			var chord any
			if m.Chord != nil {
				chord = m.Chord.Value()
			}
			got := map[string]any{"callbacks": sigList(m.Callbacks), "errbacks": sigList(m.Errbacks), "chain": sigList(m.Chain), "chord": chord}
			if !valueEqual(got, embed) {
				t.Errorf("embed\n got %#v\nwant %#v", got, embed)
			}
		})
	}
}

// TestEncodeVectors rebuilds every protocol 2 message Celery published
// from its decoded form. Bodies without signatures are compared byte for
// byte; bodies with signatures (whose options dicts Python writes in
// insertion order, Go in sorted order) are compared as values. Every
// header and property must be equal, argsrepr and kwargsrepr included
// when Encode computes them.
func TestEncodeVectors(t *testing.T) {
	byteIdentical := 0
	for _, v := range loadVectors(t) {
		ct := v.contentType()
		if len(v.Headers) == 0 || ct == ContentTypePickle || ct == ContentTypeYAML {
			continue
		}
		t.Run(v.Name, func(t *testing.T) {
			raw := v.raw(t)
			m, err := Decode(raw, acceptAll)
			if err != nil {
				t.Fatal(err)
			}
			opts := EncodeOptions{}
			if ct == ContentTypeMsgpack {
				opts.Serializer = "msgpack"
			}
			if _, ok := raw.Headers["compression"]; ok {
				opts.Compression = "zlib"
			}
			if m.Expires != nil {
				exp := *m.Expires
				want, _ := v.Properties["expiration"].(string)
				ms, _ := time.ParseDuration(want + "ms")
				opts.Now = func() time.Time { return exp.Add(-ms) }
			}
			// Python writes dicts in insertion order, Go maps in sorted
			// order: only bodies whose dicts happen to be sorted (besides
			// the embed, which Encode writes in Celery's order) can be
			// byte-identical, and only their reprs can be equal.
			sorted := !hasUnsortedDict(orderedBody(t, raw, ct))
			if sorted {
				m.ArgsRepr, m.KwargsRepr = "", "" // let Encode compute them
			}
			out, err := Encode(m, opts)
			if err != nil {
				t.Fatal(err)
			}
			for k, want := range raw.Headers {
				if !valueEqual(out.Headers[k], want) {
					t.Errorf("header %s = %#v, Celery sent %#v", k, out.Headers[k], want)
				}
			}
			if len(out.Headers) != len(raw.Headers) {
				t.Errorf("%d headers, Celery sent %d", len(out.Headers), len(raw.Headers))
			}
			for k, hv := range out.Headers {
				switch hv.(type) {
				case nil, string, int64, float64, bool, []any, map[string]any:
				default:
					t.Errorf("header %s has type %T", k, hv)
				}
			}
			if out.ContentType != raw.ContentType || out.ContentEncoding != raw.ContentEncoding ||
				out.DeliveryMode != 2 || out.CorrelationID != raw.CorrelationID ||
				out.ReplyTo != raw.ReplyTo || out.Expiration != raw.Expiration {
				t.Errorf("properties %+v, want %+v", out, raw)
			}
			if raw.HasPriority && out.Priority != raw.Priority {
				t.Errorf("priority %d, want %d", out.Priority, raw.Priority)
			}
			gotBody, wantBody := out.Body, raw.Body
			if opts.Compression != "" {
				gotBody, wantBody = inflate(t, gotBody), inflate(t, wantBody)
			}
			if bytes.Equal(gotBody, wantBody) {
				byteIdentical++
				return
			}
			if sorted {
				t.Errorf("body differs\n got %q\nwant %q", gotBody, wantBody)
			}
			back, err := Decode(out, acceptAll)
			if err != nil {
				t.Fatal(err)
			}
			gv, _ := Encode(back, opts)
			if !bytes.Equal(gv.Body, out.Body) {
				t.Errorf("re-encoding is not stable")
			}
			if !valueEqual(back.Args, m.Args) || !valueEqual(back.Kwargs, m.Kwargs) ||
				!valueEqual(sigList(back.Chain), sigList(m.Chain)) || !valueEqual(sigList(back.Callbacks), sigList(m.Callbacks)) ||
				!valueEqual(sigList(back.Errbacks), sigList(m.Errbacks)) {
				t.Errorf("body values differ")
			}
		})
	}
	t.Logf("%d bodies byte-identical to Celery's", byteIdentical)
	if byteIdentical < 10 {
		t.Errorf("only %d bodies byte-identical", byteIdentical)
	}
}

// orderedBody decodes a vector body keeping dict key order, without the
// embed element.
func orderedBody(t *testing.T, raw *RawMessage, ct string) any {
	t.Helper()
	body := raw.Body
	if _, ok := raw.Headers["compression"]; ok {
		body = inflate(t, body)
	}
	var v any
	var err error
	if ct == ContentTypeMsgpack {
		v, err = unmarshalMsgpack(body, true)
	} else {
		v, err = unmarshalJSONOrdered(body)
	}
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// celeryOrders are key orders Encode reproduces: signatures and the embed.
var celeryOrders = [][]string{
	{"task", "args", "kwargs", "options", "subtask_type", "immutable"},
	{"callbacks", "errbacks", "chain", "chord"},
}

// hasUnsortedDict reports whether a Dict anywhere in v has its keys out of
// sorted order.
func hasUnsortedDict(v any) bool {
	switch x := v.(type) {
	case []any:
		for _, it := range x {
			if hasUnsortedDict(it) {
				return true
			}
		}
	case Dict:
		keys := make([]string, len(x))
		for i, it := range x {
			keys[i] = it.Key
		}
		celery := slices.ContainsFunc(celeryOrders, func(o []string) bool { return slices.Equal(o, keys) })
		for i, it := range x {
			if !celery && i > 0 && x[i-1].Key > it.Key {
				return true
			}
			if hasUnsortedDict(it.Value) {
				return true
			}
		}
	}
	return false
}

func inflate(t *testing.T, b []byte) []byte {
	t.Helper()
	r, err := zlib.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := out.ReadFrom(r); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestEncodeMsgpackByteIdentical(t *testing.T) {
	for _, name := range []string{"amqp/v2_msgpack_add", "amqp/v2_msgpack_bytes"} {
		v := loadVector(t, name)
		od, err := unmarshalMsgpack(v.Body, true)
		if err != nil {
			t.Fatal(err)
		}
		out, err := marshalMsgpack(od)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, v.Body) {
			t.Errorf("%s: got %x, want %x", name, out, v.Body)
		}
	}
}

// baseRaw returns a valid protocol 2 message (Celery's add.delay(2, 2)).
func baseRaw(t testing.TB) *RawMessage {
	return loadVector(t, "amqp/v2_json_add").raw(t)
}

func zlibBytes(b []byte) []byte {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// TestDecodeBadInputs covers the decoding rows of the bad-input catalogue:
// every row either decodes (rows Celery runs) or gives the expected
// sentinel and reason, with the task id when the headers carry one.
func TestDecodeBadInputs(t *testing.T) {
	const id = "00000001-0000-4000-8000-000000000001"
	bomb := append([]byte(`[["`), bytes.Repeat([]byte("a"), 20<<20)...)
	bomb = append(bomb, `"], {}, {}]`...)
	bombZ := zlibBytes(bomb)

	type row struct {
		name   string
		mutate func(r *RawMessage)
		opts   DecodeOptions
		kind   error  // nil: must decode
		reason string // expected reason
		check  func(t *testing.T, m *Message)
		noID   bool // the id cannot be known
	}
	rows := []row{
		{name: "1 valid", check: func(t *testing.T, m *Message) {
			if m.ID != id || m.Task != "tasks.add" || !valueEqual(m.Args, []any{int64(2), int64(2)}) {
				t.Errorf("%+v", m)
			}
		}},
		{name: "2 invalid json", mutate: func(r *RawMessage) { r.Body = []byte("{not json") }, kind: ErrDecode, reason: "bad-json"},
		{name: "3 body object", mutate: func(r *RawMessage) { r.Body = []byte(`{"a": 1}`) }, kind: ErrInvalidTask, reason: "body-not-list"},
		{name: "4 body of 2", mutate: func(r *RawMessage) { r.Body = []byte(`[1, 2]`) }, kind: ErrInvalidTask, reason: "body-length"},
		{name: "4b body of 4", mutate: func(r *RawMessage) { r.Body = []byte(`[[], {}, {}, 1]`) }, kind: ErrInvalidTask, reason: "body-length"},
		{name: "5 body null", mutate: func(r *RawMessage) { r.Body = []byte(`null`) }, kind: ErrInvalidTask, reason: "body-not-list"},
		{name: "8 kwargs list", mutate: func(r *RawMessage) { r.Body = []byte(`[[1, 2], [], {}]`) }, kind: ErrInvalidTask, reason: "kwargs-not-object"},
		{name: "9 args string", mutate: func(r *RawMessage) { r.Body = []byte(`["12", {}, {}]`) }, kind: ErrInvalidTask, reason: "args-not-list"},
		{name: "10 pickle", mutate: func(r *RawMessage) { r.ContentType = ContentTypePickle }, kind: ErrContentDisallowed, reason: "content-disallowed"},
		{name: "11 unknown type", mutate: func(r *RawMessage) { r.ContentType = "application/x-foo" }, kind: ErrContentDisallowed, reason: "content-disallowed"},
		{name: "11b data", mutate: func(r *RawMessage) { r.ContentType = "application/data" }, kind: ErrContentDisallowed, reason: "content-disallowed"},
		{name: "12 empty content type", mutate: func(r *RawMessage) { r.ContentType = "" }, kind: ErrContentDisallowed, reason: "empty-content-type"},
		{name: "14 no task header", mutate: func(r *RawMessage) { delete(r.Headers, "task") }, kind: ErrUnknownMessage, reason: "no-task", noID: true},
		{name: "15 no id", mutate: func(r *RawMessage) { delete(r.Headers, "id") }, kind: ErrInvalidTask, reason: "missing-id", noID: true},
		{name: "15b id null", mutate: func(r *RawMessage) { r.Headers["id"] = nil }, kind: ErrInvalidTask, reason: "missing-id", noID: true},
		{name: "15c id empty", mutate: func(r *RawMessage) { r.Headers["id"] = "" }, kind: ErrInvalidTask, reason: "bad-id", noID: true},
		{name: "16 eta not a date", mutate: func(r *RawMessage) { r.Headers["eta"] = "not-a-date" }, kind: ErrInvalidTask, reason: "bad-eta"},
		{name: "17 eta int", mutate: func(r *RawMessage) { r.Headers["eta"] = int64(12345) }, kind: ErrInvalidTask, reason: "bad-eta"},
		{name: "19 expires garbage", mutate: func(r *RawMessage) { r.Headers["expires"] = "garbage" }, kind: ErrInvalidTask, reason: "bad-expires"},
		{name: "22 timelimit abc", mutate: func(r *RawMessage) { r.Headers["timelimit"] = "abc" }, kind: ErrInvalidTask, reason: "bad-timelimit"},
		{name: "22b timelimit of 3", mutate: func(r *RawMessage) { r.Headers["timelimit"] = []any{int64(1), int64(2), int64(3)} }, kind: ErrInvalidTask, reason: "bad-timelimit"},
		{name: "22c timelimit string item", mutate: func(r *RawMessage) { r.Headers["timelimit"] = []any{"1", nil} }, kind: ErrInvalidTask, reason: "bad-timelimit"},
		{name: "23 retries x", mutate: func(r *RawMessage) { r.Headers["retries"] = "x" }, check: func(t *testing.T, m *Message) {
			if m.Retries != 0 {
				t.Errorf("retries %d", m.Retries)
			}
		}},
		{name: "24 task int", mutate: func(r *RawMessage) { r.Headers["task"] = int64(5) }, kind: ErrInvalidTask, reason: "bad-task"},
		{name: "25 id path", mutate: func(r *RawMessage) { r.Headers["id"] = "../../etc/passwd" }, noID: true, check: func(t *testing.T, m *Message) {
			if m.ID != "../../etc/passwd" {
				t.Error(m.ID)
			}
		}},
		{name: "26 id 20kB", mutate: func(r *RawMessage) { r.Headers["id"] = strings.Repeat("a", 20000) }, kind: ErrInvalidTask, reason: "bad-id", noID: true},
		{name: "26b id control char", mutate: func(r *RawMessage) { r.Headers["id"] = "a\nb" }, kind: ErrInvalidTask, reason: "bad-id", noID: true},
		{name: "27 non-UTF-8", mutate: func(r *RawMessage) { r.Body = []byte("[[\"\xff\xfe\"], {}, {}]") }, kind: ErrDecode, reason: "bad-json"},
		{name: "28 deep nesting", mutate: func(r *RawMessage) {
			r.Body = []byte(strings.Repeat("[", 100000) + strings.Repeat("]", 100000))
		}, kind: ErrDecode, reason: "bad-json"},
		{name: "29 gzip header, plain body", mutate: func(r *RawMessage) { r.Headers["compression"] = CompressionZlib }, kind: ErrDecode, reason: "bad-compression"},
		{name: "29b truncated zlib", mutate: func(r *RawMessage) {
			z := zlibBytes(r.Body)
			r.Body = z[:len(z)-6]
			r.Headers["compression"] = CompressionZlib
		}, kind: ErrDecode, reason: "bad-compression"},
		{name: "30 unknown compression", mutate: func(r *RawMessage) { r.Headers["compression"] = "application/x-foo" }, kind: ErrDecode, reason: "unknown-compression"},
		{name: "31 zlib bomb", mutate: func(r *RawMessage) {
			r.Body = bombZ
			r.Headers["compression"] = CompressionZlib
		}, opts: DecodeOptions{MaxBodySize: 1 << 20}, kind: ErrTooLarge, reason: "inflated-too-large"},
		{name: "31b zlib bomb under default cap", mutate: func(r *RawMessage) {
			r.Body = bombZ
			r.Headers["compression"] = CompressionZlib
		}, kind: ErrTooLarge, reason: "inflated-too-large"},
		{name: "31c body over cap", mutate: func(r *RawMessage) { r.Body = bomb }, opts: DecodeOptions{MaxBodySize: 1 << 20}, kind: ErrTooLarge, reason: "body-too-large"},
		{name: "31d zlib ok", mutate: func(r *RawMessage) {
			r.Body = zlibBytes(r.Body)
			r.Headers["compression"] = "zlib"
		}},
		{name: "35 callbacks string", mutate: func(r *RawMessage) {
			r.Body = []byte(`[[], {}, {"callbacks": "zzz", "errbacks": null, "chain": null, "chord": null}]`)
		}, kind: ErrInvalidTask, reason: "bad-callbacks"},
		{name: "35b chain item not object", mutate: func(r *RawMessage) {
			r.Body = []byte(`[[], {}, {"callbacks": null, "errbacks": null, "chain": [1], "chord": null}]`)
		}, kind: ErrInvalidTask, reason: "bad-chain"},
		{name: "35c embed list", mutate: func(r *RawMessage) { r.Body = []byte(`[[], {}, []]`) }, kind: ErrInvalidTask, reason: "embed-not-object"},
		{name: "35d embed null", mutate: func(r *RawMessage) { r.Body = []byte(`[[], {}, null]`) }},
		{name: "37 foreign message", mutate: func(r *RawMessage) {
			r.Headers = map[string]any{}
			r.Body = []byte(`{"hello": "world"}`)
		}, kind: ErrUnknownMessage, reason: "no-task", noID: true},
		{name: "39 lang go", mutate: func(r *RawMessage) { r.Headers["lang"] = "go" }},
		{name: "40 empty body", mutate: func(r *RawMessage) { r.Body = nil }, kind: ErrDecode, reason: "empty-body"},
		{name: "43 no header table", mutate: func(r *RawMessage) { r.Headers = nil }, kind: ErrUnknownMessage, reason: "no-task", noID: true},
		{name: "44 hybrid, headers win", mutate: func(r *RawMessage) {
			r.Body = []byte(`{"task": "tasks.mul", "id": "body-id", "args": [3, 4], "kwargs": {"z": 1}, "retries": 2, "group": "g1", "callbacks": [{"task": "tasks.cb"}]}`)
		}, check: func(t *testing.T, m *Message) {
			if m.Protocol != 2 || m.ID != id || m.Task != "tasks.add" || m.Retries != 0 || m.GroupID != "" ||
				!valueEqual(m.Args, []any{int64(3), int64(4)}) || len(m.Kwargs) != 1 || len(m.Callbacks) != 1 || m.Callbacks[0].Task != "tasks.cb" {
				t.Errorf("%+v", m)
			}
		}},
		{name: "46 big numbers", mutate: func(r *RawMessage) {
			r.Body = []byte(`[[1e400, 18446744073709551616, -1e400], {}, {}]`)
		}, check: func(t *testing.T, m *Message) {
			if !valueEqual(m.Args, []any{math.Inf(1), bigInt("18446744073709551616"), math.Inf(-1)}) {
				t.Errorf("%#v", m.Args)
			}
		}},
		{name: "47 duplicate keys and NaN", mutate: func(r *RawMessage) {
			r.Body = []byte(`[[NaN], {"a": 1, "a": 2}, {}]`)
		}, check: func(t *testing.T, m *Message) {
			if !valueEqual(m.Args, []any{math.NaN()}) || m.Kwargs["a"] != int64(2) {
				t.Errorf("%#v %#v", m.Args, m.Kwargs)
			}
		}},
		{name: "47b BOM", mutate: func(r *RawMessage) { r.Body = append([]byte("\xef\xbb\xbf"), r.Body...) }, kind: ErrDecode, reason: "bad-json"},
		{name: "48 exotic header types", mutate: func(r *RawMessage) {
			r.Headers["id"] = []byte(id)
			r.Headers["timelimit"] = []any{int32(10), float32(2.5)}
			r.Headers["eta"] = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
			r.Headers["group_index"] = int32(3)
			r.Headers["retries"] = uint8(2)
			r.Headers["ignore_result"] = int64(1)
			r.Headers["origin"] = map[string]any{"x": 1}
			r.Headers["x-dec"] = struct{ A int }{1}
		}, check: func(t *testing.T, m *Message) {
			if m.ID != id || *m.TimeLimit != 10 || *m.SoftTimeLimit != 2.5 || m.ETA.Year() != 2030 ||
				*m.GroupIndex != 3 || m.Retries != 2 || !m.IgnoreResult || m.Origin != "" {
				t.Errorf("%+v", m)
			}
		}},
		{name: "48b group int", mutate: func(r *RawMessage) { r.Headers["group"] = int64(7) }, kind: ErrInvalidTask, reason: "bad-group"},
		{name: "48c group_index string", mutate: func(r *RawMessage) { r.Headers["group_index"] = "1" }, kind: ErrInvalidTask, reason: "bad-group_index"},
		{name: "48d ignore_result string", mutate: func(r *RawMessage) { r.Headers["ignore_result"] = "yes" }, kind: ErrInvalidTask, reason: "bad-ignore_result"},
		{name: "48e compression int", mutate: func(r *RawMessage) { r.Headers["compression"] = int64(1) }, kind: ErrDecode, reason: "bad-compression"},
		{name: "msgpack not accepted", mutate: func(r *RawMessage) { r.ContentType = ContentTypeMsgpack }, kind: ErrContentDisallowed, reason: "content-disallowed"},
		{name: "json not accepted", opts: DecodeOptions{Accept: []string{"msgpack"}}, kind: ErrContentDisallowed, reason: "content-disallowed"},
		{name: "bad msgpack", mutate: func(r *RawMessage) { r.ContentType = ContentTypeMsgpack }, opts: acceptAll, kind: ErrDecode, reason: "bad-msgpack"},
		{name: "v1 args null", mutate: func(r *RawMessage) {
			r.Headers = map[string]any{}
			r.Body = []byte(`{"task": "tasks.add", "id": "x1", "args": null}`)
		}, kind: ErrInvalidTask, reason: "args-not-list", noID: true},
		{name: "v1 taskset", mutate: func(r *RawMessage) {
			r.Headers = map[string]any{}
			r.Body = []byte(`{"task": "tasks.add", "id": "x1", "taskset": "ts", "group": null, "timelimit": [1.5, null], "utc": false, "eta": "2030-01-01T12:00:00"}`)
		}, noID: true, check: func(t *testing.T, m *Message) {
			if m.Protocol != 1 || m.GroupID != "ts" || *m.TimeLimit != 1.5 || m.SoftTimeLimit != nil ||
				!m.ETA.Equal(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)) || len(m.Args) != 0 || m.Kwargs == nil {
				t.Errorf("%+v", m)
			}
		}},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			raw := baseRaw(t)
			if r.mutate != nil {
				r.mutate(raw)
			}
			m, err := Decode(raw, r.opts)
			if r.kind == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if r.check != nil {
					r.check(t, m)
				}
				return
			}
			if !errors.Is(err, r.kind) {
				t.Fatalf("err = %v, want %v", err, r.kind)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("%T is not *DecodeError", err)
			}
			if de.Reason != r.reason {
				t.Errorf("reason %q, want %q (%v)", de.Reason, r.reason, err)
			}
			if !r.noID && de.ID != id {
				t.Errorf("DecodeError.ID = %q, want the task id", de.ID)
			}
			if len(err.Error()) > 2000 {
				t.Errorf("error text of %d bytes", len(err.Error()))
			}
		})
	}
}

func TestDecodeNil(t *testing.T) {
	if _, err := Decode(nil, DecodeOptions{}); !errors.Is(err, ErrUnknownMessage) {
		t.Fatal(err)
	}
}

func FuzzDecode(f *testing.F) {
	bodies, err := loadVectorsNoFail()
	if err != nil {
		f.Fatal(err)
	}
	for _, b := range bodies {
		f.Add(b, ContentTypeJSON, "", true)
		f.Add(b, ContentTypeMsgpack, "", true)
	}
	for _, s := range []string{"{not json", `{"a": 1}`, "[1, 2]", "null", `[[1, 2], [], {}]`, `["12", {}, {}]`,
		"", "\xff", `{"task": "t", "id": "i", "args": [1], "callbacks": [{"task": 1}]}`,
		`[[], {}, {"callbacks": "zzz"}]`, `[[], {}, {"chord": {"task": "x", "options": []}}]`} {
		f.Add([]byte(s), ContentTypeJSON, "", true)
		f.Add([]byte(s), ContentTypeJSON, "", false)
	}
	f.Add(zlibBytes([]byte(`[[2, 2], {}, {}]`)), ContentTypeJSON, CompressionZlib, true)
	f.Add([]byte("\x93\x92\x02\x02\x80\xc0"), ContentTypeMsgpack, "", true)
	f.Add([]byte("\xc6\x7f\xff\xff\xff"), ContentTypeMsgpack, "", true) // a 2 GiB bin32 in 5 bytes
	f.Fuzz(func(t *testing.T, body []byte, ct, compression string, v2 bool) {
		raw := &RawMessage{ContentType: ct, Body: body, Headers: map[string]any{}}
		if v2 {
			raw.Headers = map[string]any{"task": "tasks.add", "id": "abc", "timelimit": []any{nil, int64(3)}}
		}
		if compression != "" {
			raw.Headers["compression"] = compression
		}
		m, err := Decode(raw, DecodeOptions{Accept: []string{"json", "msgpack"}, MaxBodySize: 1 << 20})
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("%T is not *DecodeError", err)
			}
			return
		}
		if m.ID == "" || m.Task == "" || m.Args == nil || m.Kwargs == nil {
			t.Fatalf("incomplete message %+v", m)
		}
		_ = Repr(m.Args)
		_ = ArgsRepr(m.Args)
		if _, err := Encode(m, EncodeOptions{Serializer: "msgpack"}); err != nil && !errors.Is(err, ErrUnsupportedValue) {
			t.Fatalf("Encode: %v", err)
		}
	})
}

// BodySize is the body's size after decompression, what the message holds
// in memory, not its size on the wire.
func TestDecodeBodySizeIsInflatedSize(t *testing.T) {
	m := &Message{ID: "sized", Task: "t", Args: []any{strings.Repeat("y", 50_000)}, Kwargs: map[string]any{}}
	plain, err := Encode(m, EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	zipped, err := Encode(m, EncodeOptions{Compression: "zlib"})
	if err != nil {
		t.Fatal(err)
	}
	for name, raw := range map[string]*RawMessage{"plain": plain, "zlib": zipped} {
		got, err := Decode(raw, DecodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.BodySize != len(plain.Body) {
			t.Errorf("%s: BodySize %d, want %d (wire %d)", name, got.BodySize, len(plain.Body), len(raw.Body))
		}
	}
}

// A body within MaxBodySize cannot decode to more than MaxValues values:
// two bytes of JSON ("0,") or one of msgpack cost tens of bytes of Go
// values. Past the cap the message is refused as ErrTooLarge, with the id
// known, before anything more is allocated.
func TestDecodeCapsTheNumberOfValues(t *testing.T) {
	args := make([]any, 5000)
	for i := range args {
		args[i] = int64(0)
	}
	for _, ser := range []string{"json", "msgpack"} {
		raw, err := Encode(&Message{ID: "many", Task: "t", Args: args, Kwargs: map[string]any{}}, EncodeOptions{Serializer: ser})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Decode(raw, DecodeOptions{Accept: []string{ser}, MaxValues: 1000})
		var de *DecodeError
		if !errors.As(err, &de) || !errors.Is(err, ErrTooLarge) || de.Reason != "too-many-values" || de.ID != "many" {
			t.Errorf("%s: %v, want ErrTooLarge too-many-values for id many", ser, err)
		}
		if _, err := Decode(raw, DecodeOptions{Accept: []string{ser}}); err != nil {
			t.Errorf("%s under the default cap: %v", ser, err)
		}
		if _, err := Decode(raw, DecodeOptions{Accept: []string{ser}, MaxValues: -1}); err != nil {
			t.Errorf("%s without a cap: %v", ser, err)
		}
	}
	// A msgpack array declaring more items than the cap is refused before
	// it is allocated.
	body := append([]byte{0x93, 0xdd, 0x00, 0x01, 0x00, 0x00}, bytes.Repeat([]byte{0x00}, 1<<16)...)
	body = append(body, 0x80, 0x80)
	raw := &RawMessage{ContentType: ContentTypeMsgpack, Body: body,
		Headers: map[string]any{"id": "declared", "task": "t", "lang": "py"}}
	if _, err := Decode(raw, DecodeOptions{Accept: []string{"msgpack"}, MaxValues: 1000}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("declared array: %v, want ErrTooLarge", err)
	}
}

package worker

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/gworker/gworker/protocol"
)

// A packed message unpacks to the message as delivered: properties, every
// header value type a transport gives, and the body.
func TestPackRawRoundTrip(t *testing.T) {
	when := time.Date(2026, 12, 6, 9, 0, 0, 123456000, time.UTC)
	id := "52c00ca4-01cd-4c73-9696-3ad16848879c"
	for _, m := range []*protocol.RawMessage{
		{},
		{Body: []byte("[[], {}, {}]"), ContentType: "application/json", ContentEncoding: "utf-8"},
		{
			Headers: map[string]any{
				"lang": "py", "task": "tasks.add", "id": id, "root_id": id, "parent_id": nil,
				"shadow": nil, "eta": "2026-12-06T09:09:17.293988+00:00", "retries": int64(3),
				"timelimit": []any{nil, 1.5}, "ignore_result": false, "argsrepr": "(1, 2)",
				"stamps": map[string]any{"a": []any{"x", id, true}, "b": map[string]any{}},
				"when":   when, "raw": []byte{0, 1, 255}, "neg": int64(-1 << 40), "custom": "",
				"x-delivery-count": int64(2),
			},
			Body:        []byte(`[[1, 2], {}, {"callbacks": null}]`),
			ContentType: "application/json", ContentEncoding: "utf-8",
			CorrelationID: id, ReplyTo: "reply-queue", AppID: "app-x", DeliveryMode: 2, Priority: 7, HasPriority: true,
			Expiration: "60000", Exchange: "ex", RoutingKey: "celery", Redelivered: true,
		},
		// An id that is one of the common strings, and a protocol 1 body
		// without headers.
		{Headers: map[string]any{"id": "py", "root_id": "py"}},
		{Headers: map[string]any{}, Body: []byte(`{"task": "t", "id": "x"}`)},
		// The embed Celery writes for a task without callbacks, alone and
		// at the end of a body; almost it.
		{Body: []byte(emptyEmbed)},
		{Body: []byte(`[[1, 2], {}` + emptyEmbed)},
		{Body: []byte(`[[1, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": 0}]`)},
	} {
		b, idAt, idLen, err := packRaw(m)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := m.Headers["id"].(string); idLen >= 0 && string(b[idAt:idAt+idLen]) != want {
			t.Errorf("id located as %q, want %q", b[idAt:idAt+idLen], want)
		}
		got, err := unpackRaw(b)
		if err != nil {
			t.Fatalf("unpack %+v: %v", m, err)
		}
		if len(m.Body) == 0 && len(got.Body) == 0 {
			got.Body = m.Body
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, m)
		}
	}
}

// Times as Python's isoformat writes them pack as numbers and come back
// byte for byte; other spellings stay strings, unchanged.
func TestPackRawISOTimes(t *testing.T) {
	empty, _, _, err := packRaw(&protocol.RawMessage{Headers: map[string]any{"eta": ""}})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{
		"2026-12-06T09:09:17.293988+00:00", "2026-12-06T09:09:17+00:00", "2026-12-06T09:09:17.000001-05:30",
		"1969-12-31T23:59:59.999999+14:00",
		"2026-12-06T09:09:17.000000+00:00", "2026-12-06T09:09:17.29398+00:00", "2026-12-06T09:09:17.293988Z",
		"2026-12-06 09:09:17.293988+00:00", "2026-13-06T09:09:17.293988+00:00", "2026-12-06T09:09:17.293988+00:00x",
	} {
		m := &protocol.RawMessage{Headers: map[string]any{"eta": v}}
		b, _, _, err := packRaw(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := unpackRaw(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.Headers["eta"] != v {
			t.Errorf("%q came back as %q", v, got.Headers["eta"])
		}
		// The empty string takes 2 bytes; a time as a number at most 16.
		if _, _, iso := parseISO(v); iso != (len(b)-len(empty) <= 14) {
			t.Errorf("%q: packed in %d bytes more than \"\" (as a number: %v)", v, len(b)-len(empty), iso)
		}
	}
}

// A value no transport gives is refused, and the hold then keeps the
// message unpacked.
func TestPackRawRefusesUnknownValues(t *testing.T) {
	if _, _, _, err := packRaw(&protocol.RawMessage{Headers: map[string]any{"x": struct{}{}}}); err == nil {
		t.Fatal("no error")
	}
}

// Truncated or corrupt packed messages fail with errPackedMessage, never
// panic.
func TestUnpackRawMalformed(t *testing.T) {
	b, _, _, err := packRaw(&protocol.RawMessage{Headers: map[string]any{"id": "abc", "l": []any{int64(1), "s"}},
		Body: []byte("body"), RoutingKey: "q"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(b) {
		if _, err := unpackRaw(b[:i]); !errors.Is(err, errPackedMessage) {
			t.Errorf("truncated to %d bytes: %v", i, err)
		}
	}
	bad := append([]byte(nil), b...)
	bad[3] = 0xEE // the first property's tag
	if _, err := unpackRaw(bad); !errors.Is(err, errPackedMessage) {
		t.Errorf("bad tag: %v", err)
	}
}

// What a held message costs, packed, for a typical Celery message.
func BenchmarkPackRaw(b *testing.B) {
	id := "52c00ca4-01cd-4c73-9696-3ad16848879c"
	m := &protocol.RawMessage{Headers: map[string]any{
		"lang": "py", "task": "tasks.add", "id": id, "root_id": id, "parent_id": nil, "group": nil,
		"shadow": nil, "eta": "2026-12-06T09:09:17.293988+00:00", "expires": nil, "retries": int64(0),
		"timelimit": []any{nil, nil}, "ignore_result": false, "argsrepr": "(1234, 1234)", "kwargsrepr": "{}",
		"origin": "gen29680@vm", "group_index": nil,
	}, Body: []byte(`[[1234, 1234], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`),
		ContentType: "application/json", ContentEncoding: "utf-8", DeliveryMode: 2, RoutingKey: "celery"}
	var n int
	b.ReportAllocs()
	for b.Loop() {
		p, _, _, _ := packRaw(m)
		n = len(p)
	}
	b.ReportMetric(float64(n), "packed-bytes")
}

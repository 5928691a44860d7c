package redistransport

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
)

// TestDecodeCapturedEnvelope reads the envelope Celery 5.2.6 LPUSHed for
// add.delay(2, 2).
func TestDecodeCapturedEnvelope(t *testing.T) {
	env, err := decodeEnvelope(testenv.ReadTestdata(t, "v2_json_add_envelope.raw"))
	if err != nil {
		t.Fatal(err)
	}
	r := env.raw
	if env.tag != "f6705c98-9017-4d03-9959-ac5da1562d0e" || env.exchange != "" || env.routingKey != "celery" {
		t.Fatalf("routing: %+v", env)
	}
	if r.ContentType != "application/json" || r.ContentEncoding != "utf-8" ||
		r.CorrelationID != "00000100-0000-4000-8000-000000000001" || r.ReplyTo != "1060290b-5ac4-3725-872a-3b9756898eb5" ||
		r.DeliveryMode != 2 || !r.HasPriority || r.Priority != 0 || r.Redelivered {
		t.Fatalf("properties: %+v", r)
	}
	if r.Headers["task"] != "tasks.add" || r.Headers["retries"] != int64(0) {
		t.Fatalf("headers: %v", r.Headers)
	}
	if string(r.Body) != `[[2, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]` {
		t.Fatalf("body: %s", r.Body)
	}
	m, err := protocol.Decode(&r, protocol.DecodeOptions{})
	if err != nil || m.Task != "tasks.add" || len(m.Args) != 2 {
		t.Fatalf("protocol.Decode: %v %+v", err, m)
	}
	env, err = decodeEnvelope(testenv.ReadTestdata(t, "v2_priority9_envelope.raw"))
	if err != nil || env.raw.Priority != 9 {
		t.Fatalf("priority 9: %v %+v", err, env)
	}
}

// TestEncodeMatchesKombu re-encodes the captured message: the bytes equal
// kombu's apart from the order of the header keys, which Python keeps in
// insertion order and Go writes sorted.
func TestEncodeMatchesKombu(t *testing.T) {
	raw := testenv.ReadTestdata(t, "v2_json_add_envelope.raw")
	env, err := decodeEnvelope(raw)
	if err != nil {
		t.Fatal(err)
	}
	out, err := encodeEnvelope(&env.raw, env.exchange, env.routingKey, env.tag)
	if err != nil {
		t.Fatal(err)
	}
	hs, he, _ := member(raw, 0, "headers")
	os, oe, _ := member(out, 0, "headers")
	if !bytes.Equal(raw[:hs], out[:os]) || !bytes.Equal(raw[he:], out[oe:]) {
		t.Fatalf("envelope differs from kombu's\nkombu: %s\ngo:    %s", raw, out)
	}
	var a, b any
	if json.Unmarshal(raw[hs:he], &a) != nil || json.Unmarshal(out[os:oe], &b) != nil || !reflect.DeepEqual(a, b) {
		t.Fatalf("headers differ:\n%s\n%s", raw[hs:he], out[os:oe])
	}
}

// TestUnackedEntryMatchesKombu builds the unacked hash value from the
// envelope: byte for byte what kombu stored.
func TestUnackedEntryMatchesKombu(t *testing.T) {
	item := testenv.ReadTestdata(t, "v2_json_add_envelope.raw")
	want := testenv.ReadTestdata(t, "unacked_entry.raw")
	got := unackedEntry(item, "", "celery")
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	back, ex, rk, err := parseUnackedEntry(want)
	if err != nil || !bytes.Equal(back, item) || ex != "" || rk != "celery" {
		t.Fatalf("parse: %v %q %q", err, ex, rk)
	}
}

func TestMarkRedelivered(t *testing.T) {
	item := testenv.ReadTestdata(t, "v2_json_add_envelope.raw")
	out := markRedelivered(item)
	env, err := decodeEnvelope(out)
	if err != nil {
		t.Fatal(err)
	}
	if !env.raw.Redelivered || env.raw.Headers["redelivered"] != true {
		t.Fatalf("not flagged: %s", out)
	}
	// Idempotent, and other bytes untouched.
	if again := markRedelivered(out); !bytes.Equal(again, out) {
		t.Fatalf("second mark changed the envelope:\n%s\n%s", out, again)
	}
	if !bytes.HasPrefix(out, item[:100]) {
		t.Fatal("body changed")
	}
	// Python-only JSON survives untouched; empty headers get the key.
	odd := []byte(`{"body": "", "headers": {}, "properties": {"delivery_tag": "t", "x": NaN, "big": 123456789012345678901234567890, "delivery_info": {"exchange": "", "routing_key": "q"}}}`)
	out = markRedelivered(odd)
	want := `{"body": "", "headers": {"redelivered": true}, "properties": {"delivery_tag": "t", "x": NaN, "big": 123456789012345678901234567890, "delivery_info": {"exchange": "", "routing_key": "q", "redelivered": true}}}`
	if string(out) != want {
		t.Fatalf("got  %s\nwant %s", out, want)
	}
}

func TestDecodeBadEnvelopes(t *testing.T) {
	for _, s := range []string{
		`not json`, `[]`, `{"body": "eA=="}`,
		`{"body": "eA==", "properties": {"delivery_tag": "t"}}`,
		`{"body": "!!", "properties": {"delivery_tag": "t", "body_encoding": "base64", "delivery_info": {}}}`,
		`{"body": 1, "properties": {"delivery_tag": "t", "delivery_info": {}}}`,
		`{"headers": [], "properties": {"delivery_tag": "t", "delivery_info": {}}}`,
	} {
		if _, err := decodeEnvelope([]byte(s)); !errors.Is(err, ErrBadEnvelope) {
			t.Errorf("%s: got %v", s, err)
		}
	}
}

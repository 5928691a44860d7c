package producer_test

import (
	"bytes"
	"compress/zlib"
	"context"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
)

const (
	vecReplyTo = "d58800da-0242-36df-8e40-45e4795aab1b"
	vecOrigin  = "gen10655@vm"
)

func fixedProducer(pub producer.Publisher, now time.Time) *producer.Producer {
	return producer.New(pub, producer.Options{
		ReplyTo: vecReplyTo,
		Origin:  vecOrigin,
		Now:     func() time.Time { return now },
	})
}

// compare checks a published message against a captured one: routing,
// properties, the header table (values and order-insensitive types as
// Python decodes them) and the body.
func compare(t *testing.T, v testenv.Vector, got published, exactBody bool) {
	t.Helper()
	if got.exchange != v.DeliveryInfo.Exchange || got.routingKey != v.DeliveryInfo.RoutingKey {
		t.Errorf("route = %q/%q, want %q/%q", got.exchange, got.routingKey, v.DeliveryInfo.Exchange, v.DeliveryInfo.RoutingKey)
	}
	m := got.msg
	props := map[string]any{
		"content_type":     m.ContentType,
		"content_encoding": m.ContentEncoding,
		"delivery_mode":    float64(m.DeliveryMode),
		"correlation_id":   m.CorrelationID,
		"reply_to":         m.ReplyTo,
	}
	if m.HasPriority {
		props["priority"] = float64(m.Priority)
	}
	if m.Expiration != "" {
		props["expiration"] = m.Expiration
	}
	if !reflect.DeepEqual(props, v.Properties) {
		t.Errorf("properties:\n got %v\nwant %v", props, v.Properties)
	}
	wantHeaders := testenv.PyValue(t, v.HeadersJSON)
	if gotHeaders := testenv.Normalize(t, m.Headers); !reflect.DeepEqual(gotHeaders, wantHeaders) {
		t.Errorf("headers:\n got %#v\nwant %#v", gotHeaders, wantHeaders)
	}
	if exactBody {
		if !bytes.Equal(m.Body, v.Body) {
			t.Errorf("body:\n got %q\nwant %q", m.Body, v.Body)
		}
		return
	}
	body := m.Body
	if m.Headers["compression"] == "application/x-gzip" {
		// zlib streams may differ in their framing; compare the content.
		zr, err := zlib.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	if m.ContentType == protocol.ContentTypeJSON {
		if gotBody, wantBody := testenv.PyValue(t, body), testenv.PyValue(t, v.BodyJSON); !reflect.DeepEqual(gotBody, wantBody) {
			t.Errorf("body:\n got %#v\nwant %#v", gotBody, wantBody)
		}
	}
}

func TestSendTaskMatchesCelery(t *testing.T) {
	ctx := context.Background()
	mul := protocol.Signature{Task: "tasks.mul", Args: []any{int64(10)}, Kwargs: map[string]any{}, Options: map[string]any{}}
	errback := protocol.Signature{Task: "tasks.errback_old", Args: []any{}, Kwargs: map[string]any{}, Options: map[string]any{}}
	now := time.Date(2026, 11, 24, 3, 19, 13, 970873000, time.UTC)
	etaAt := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	expAt := time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		vector string
		args   []any
		kwargs map[string]any
		now    time.Time
		opts   []producer.Option
		exact  bool
		queue  string
	}{
		{vector: "v2_json_add", args: []any{2, 2}, exact: true},
		{vector: "v2_json_kwargs", args: []any{2}, kwargs: map[string]any{"y": 3}, exact: true},
		{vector: "v2_json_options", args: []any{2, 2}, exact: true, opts: []producer.Option{
			producer.TimeLimit(10 * time.Second), producer.SoftTimeLimit(5 * time.Second),
			producer.Priority(7), producer.Shadow("add-shadowed"), producer.IgnoreResult(true),
			producer.Headers(map[string]any{"x-custom": "hello", "x-num": 5}),
		}},
		{vector: "v2_json_countdown_expires", args: []any{2, 2}, exact: true, now: now, opts: []producer.Option{
			producer.Countdown(60 * time.Second), producer.ExpiresIn(120 * time.Second),
		}},
		{vector: "v2_json_eta_expires_datetime", args: []any{2, 2}, exact: true,
			now: expAt.Add(-98052046022 * time.Millisecond), opts: []producer.Option{
				producer.ETA(etaAt), producer.Expires(expAt),
			}},
		{vector: "v2_json_other_queue", args: []any{2, 2}, exact: true, queue: "other", opts: []producer.Option{producer.Queue("other")}},
		{vector: "v2_json_zlib", args: []any{2, 2}, opts: []producer.Option{producer.Compression("zlib")}},
		{vector: "v2_msgpack_add", args: []any{2, 2}, exact: true, opts: []producer.Option{producer.Serializer("msgpack")}},
		{vector: "v2_link_link_error", args: []any{2, 2}, exact: true, opts: []producer.Option{
			producer.Link(mul), producer.LinkError(errback),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.vector, func(t *testing.T) {
			v := testenv.LoadVector(t, tc.vector)
			rec := &recorder{}
			p := fixedProducer(rec, tc.now)
			id, _ := v.Properties["correlation_id"].(string)
			res, err := p.SendTask(ctx, pyTaskName(t, v), tc.args, tc.kwargs, append(tc.opts, producer.TaskID(id))...)
			if err != nil {
				t.Fatal(err)
			}
			if res.ID() != id {
				t.Errorf("result id = %q, want %q", res.ID(), id)
			}
			if len(rec.msgs) != 1 {
				t.Fatalf("published %d messages, want 1", len(rec.msgs))
			}
			compare(t, v, rec.msgs[0], tc.exact)
			wantQueue := tc.queue
			if wantQueue == "" {
				wantQueue = "celery"
			}
			if !reflect.DeepEqual(rec.declared, []string{wantQueue}) {
				t.Errorf("declared %v, want [%s]", rec.declared, wantQueue)
			}
		})
	}
}

func pyTaskName(t *testing.T, v testenv.Vector) string {
	t.Helper()
	h, _ := testenv.PyValue(t, v.HeadersJSON).(map[string]any)
	name, _ := h["task"].(string)
	return name
}

package producer_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
)

func TestBuildDefaults(t *testing.T) {
	p := producer.New(&recorder{}, producer.Options{Hostname: "box"})
	msg, err := p.Build("tasks.add", []any{2, 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := msg.Message
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(m.ID) {
		t.Errorf("id %q is not a uuid4", m.ID)
	}
	checks := map[string][2]any{
		"root_id":        {m.RootID, m.ID},
		"correlation_id": {m.CorrelationID, m.ID},
		"lang":           {m.Lang, "py"},
		"argsrepr":       {m.ArgsRepr, "(2, 2)"},
		"kwargsrepr":     {m.KwargsRepr, "{}"},
		"reply_to":       {m.ReplyTo, p.ReplyTo()},
		"priority":       {m.HasPriority, true},
		"exchange":       {msg.Route.Exchange, ""},
		"routing_key":    {msg.Route.RoutingKey, "celery"},
		"declare":        {msg.Route.Declare, "celery"},
		"content_type":   {m.ContentType, protocol.ContentTypeJSON},
		"serializer":     {msg.Encoding.Serializer, "json"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %v, want %v", name, c[0], c[1])
		}
	}
	if !regexp.MustCompile(`^gen\d+@box$`).MatchString(m.Origin) {
		t.Errorf("origin = %q", m.Origin)
	}
	if m.ParentID != "" || m.GroupID != "" || m.GroupIndex != nil || m.ETA != nil || m.Expires != nil {
		t.Errorf("unexpected optional fields: %+v", m)
	}
}

func TestBuildOptions(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p := producer.New(&recorder{}, producer.Options{Now: func() time.Time { return now }, ReplyTo: "client"})
	body := protocol.Signature{Task: "tasks.xsum"}
	msg, err := p.Build("tasks.add", nil, map[string]any{"y": 1},
		producer.TaskID("T"), producer.ParentID("P"), producer.RootID("R"),
		producer.GroupID("G"), producer.GroupIndex(2), producer.Chord(body),
		producer.Countdown(90*time.Second), producer.ExpiresIn(time.Hour),
		producer.Queue("other"), producer.Retries(3), producer.ReplyTo("elsewhere"),
	)
	if err != nil {
		t.Fatal(err)
	}
	m := msg.Message
	if m.ID != "T" || m.ParentID != "P" || m.RootID != "R" || m.GroupID != "G" || *m.GroupIndex != 2 {
		t.Errorf("ids: %+v", m)
	}
	if m.Chord == nil || m.Chord.Task != "tasks.xsum" {
		t.Errorf("chord = %+v", m.Chord)
	}
	if !m.ETA.Equal(now.Add(90*time.Second)) || !m.Expires.Equal(now.Add(time.Hour)) {
		t.Errorf("eta %v expires %v", m.ETA, m.Expires)
	}
	if msg.Expiration != "3600000" {
		t.Errorf("expiration = %q", msg.Expiration)
	}
	if m.HasPriority {
		t.Error("an explicit queue without priority must leave the property unset")
	}
	if msg.Route != (producer.Route{Exchange: "", RoutingKey: "other", Declare: "other"}) {
		t.Errorf("route = %+v", msg.Route)
	}
	if m.Retries != 3 || m.ReplyTo != "elsewhere" || m.Args == nil || len(m.Args) != 0 {
		t.Errorf("retries %d reply_to %q args %#v", m.Retries, m.ReplyTo, m.Args)
	}

	// An expiry in the past is sent with expiration "0".
	msg, err = p.Build("tasks.add", nil, nil, producer.Expires(now.Add(-time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Expiration != "0" {
		t.Errorf("past expiration = %q, want 0", msg.Expiration)
	}

	// A zero countdown sets no eta, as in Celery.
	msg, err = p.Build("tasks.add", nil, nil, producer.Countdown(0))
	if err != nil {
		t.Fatal(err)
	}
	if msg.ETA != nil {
		t.Errorf("zero countdown gave eta %v", msg.ETA)
	}

	// Exchange with routing key bypasses the default exchange.
	msg, err = p.Build("tasks.add", nil, nil, producer.Exchange("ex"), producer.RoutingKey("rk"))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Route != (producer.Route{Exchange: "ex", RoutingKey: "rk"}) {
		t.Errorf("route = %+v", msg.Route)
	}
}

func TestHeadersAreTableSafe(t *testing.T) {
	p := producer.New(&recorder{}, producer.Options{})
	msg, err := p.Build("t", nil, nil, producer.Headers(map[string]any{
		"int": 5, "i16": int16(-3), "u32": uint32(7), "big": 1 << 40, "f32": float32(1.5),
		"list": []int{1, 2}, "map": map[string]int{"a": 1}, "nil": nil,
		"bytes": []byte("x"), "floats": []float64{2},
	}))
	if err != nil {
		t.Fatal(err)
	}
	h := msg.Headers
	for _, k := range []string{"int", "i16", "u32", "big"} {
		if _, ok := h[k].(int64); !ok {
			t.Errorf("header %s is %T, want int64", k, h[k])
		}
	}
	if _, ok := h["f32"].(float64); !ok {
		t.Errorf("f32 is %T", h["f32"])
	}
	if l, ok := h["list"].([]any); !ok || l[1] != int64(2) {
		t.Errorf("list is %#v", h["list"])
	}
	if m, ok := h["map"].(map[string]any); !ok || m["a"] != int64(1) {
		t.Errorf("map is %#v", h["map"])
	}
	if h["bytes"] != "x" {
		t.Errorf("bytes is %#v, want the string", h["bytes"])
	}
	if l, ok := h["floats"].([]any); !ok || l[0] != 2.0 {
		t.Errorf("floats is %#v, want [2.0]", h["floats"])
	}
}

func TestBadInput(t *testing.T) {
	p := producer.New(&recorder{}, producer.Options{})
	cases := map[string]struct {
		name string
		opts []producer.Option
		want error
	}{
		"no name":          {"", nil, producer.ErrNoTaskName},
		"countdown":        {"t", []producer.Option{producer.Countdown(-time.Second)}, producer.ErrInvalidOption},
		"priority":         {"t", []producer.Option{producer.Priority(256)}, producer.ErrInvalidOption},
		"serializer":       {"t", []producer.Option{producer.Serializer("pickle")}, producer.ErrInvalidOption},
		"compression":      {"t", []producer.Option{producer.Compression("bz2")}, producer.ErrInvalidOption},
		"bytes header":     {"t", []producer.Option{producer.Headers(map[string]any{"b": []byte{0xff}})}, producer.ErrInvalidOption},
		"uint64 header":    {"t", []producer.Option{producer.Headers(map[string]any{"u": uint64(1 << 63)})}, producer.ErrInvalidOption},
		"chan header":      {"t", []producer.Option{producer.Headers(map[string]any{"c": make(chan int)})}, producer.ErrInvalidOption},
		"negative retries": {"t", []producer.Option{producer.Retries(-1)}, producer.ErrInvalidOption},
		"group index":      {"t", []producer.Option{producer.GroupIndex(-1)}, producer.ErrInvalidOption},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := p.SendTask(context.Background(), c.name, nil, nil, c.opts...)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
	if err := p.Publish(context.Background(), nil, producer.Route{}); !errors.Is(err, producer.ErrInvalidOption) {
		t.Errorf("Publish(nil) = %v", err)
	}
	if err := p.Publish(context.Background(), &protocol.Message{Task: "t"}, producer.Route{}); !errors.Is(err, producer.ErrInvalidOption) {
		t.Errorf("Publish(no id) = %v", err)
	}
}

type failing struct{ err error }

func (f failing) Publish(context.Context, string, string, *protocol.RawMessage) error { return f.err }

func TestPublishErrorIsWrapped(t *testing.T) {
	boom := errors.New("connection reset")
	p := producer.New(failing{boom}, producer.Options{})
	msg, err := p.Build("tasks.add", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = p.PublishMessage(context.Background(), msg)
	if err == nil {
		t.Fatal("no error")
	}
	// Encoding may fail first while the codec is unavailable; once it
	// works, the transport error must come back wrapped.
	if !strings.Contains(err.Error(), "encode") && (!errors.Is(err, producer.ErrPublish) || !errors.Is(err, boom)) {
		t.Errorf("err = %v, want ErrPublish wrapping the transport error", err)
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := producer.NewID()
		if len(id) != 36 || id[14] != '4' || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
}

func TestRouteOf(t *testing.T) {
	if r := producer.RouteOf(&protocol.Message{RoutingKey: "q"}); r != (producer.Route{RoutingKey: "q", Declare: "q"}) {
		t.Errorf("default exchange: %+v", r)
	}
	if r := producer.RouteOf(&protocol.Message{Exchange: "ex", RoutingKey: "rk"}); r != (producer.Route{Exchange: "ex", RoutingKey: "rk"}) {
		t.Errorf("named exchange: %+v", r)
	}
}

// TestPublishRetry re-sends a delivered message the way a worker retries:
// same id, standard headers from the fields, custom ones kept.
func TestPublishRetry(t *testing.T) {
	rec := &recorder{}
	p := producer.New(rec, producer.Options{Origin: "gen1@w"})
	eta := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	m := &protocol.Message{
		ID: "00000211-0000-4000-8000-000000000001", Task: "tasks.retry_me", Args: []any{int64(7)},
		Retries: 1, ETA: &eta, ParentID: "00000211-0000-4000-8000-000000000001",
		ReplyTo: "client", RoutingKey: "celery",
		Headers: map[string]any{"retries": int64(0), "x-custom": "kept", "compression": "application/x-gzip"},
	}
	if err := p.Publish(context.Background(), m, producer.RouteOf(m)); err != nil {
		t.Fatal(err)
	}
	got := rec.msgs[0]
	h := got.msg.Headers
	if h["retries"] != int64(1) || h["x-custom"] != "kept" || h["origin"] != "gen1@w" || h["argsrepr"] != "(7,)" {
		t.Errorf("headers %v", h)
	}
	if h["compression"] != "application/x-gzip" || got.msg.CorrelationID != m.ID || got.routingKey != "celery" {
		t.Errorf("compression %v correlation %q route %q", h["compression"], got.msg.CorrelationID, got.routingKey)
	}
}

// delayRecorder is a transport that can have the broker hold a message.
type delayRecorder struct {
	recorder
	due []time.Time
}

func (r *delayRecorder) PublishDelayed(ctx context.Context, exchange, routingKey string, msg *protocol.RawMessage, due time.Time) error {
	r.mu.Lock()
	r.due = append(r.due, due)
	r.mu.Unlock()
	return r.Publish(ctx, exchange, routingKey, msg)
}

// A message with an eta (a countdown, an ETA, a retry) goes through
// PublishDelayed with that eta; one without goes through Publish.
func TestDelayedPublishGetsTheETA(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	rec := &delayRecorder{}
	p := producer.New(rec, producer.Options{Now: func() time.Time { return now }})
	ctx := context.Background()
	if _, err := p.SendTask(ctx, "tasks.a", nil, nil, producer.Countdown(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	eta := now.Add(time.Hour)
	if _, err := p.SendTask(ctx, "tasks.a", nil, nil, producer.ETA(eta)); err != nil {
		t.Fatal(err)
	}
	m := &protocol.Message{ID: "00000211-0000-4000-8000-000000000002", Task: "tasks.r", ETA: &eta,
		Exchange: "celery_delayed_delivery", RoutingKey: "celery"}
	if err := p.Publish(ctx, m, producer.RouteOf(m)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.SendTask(ctx, "tasks.a", nil, nil); err != nil {
		t.Fatal(err)
	}
	if len(rec.msgs) != 4 {
		t.Fatalf("%d messages published, want 4", len(rec.msgs))
	}
	want := []time.Time{now.Add(5 * time.Second), eta, eta}
	if len(rec.due) != len(want) {
		t.Fatalf("PublishDelayed got %v, want %v", rec.due, want)
	}
	for i := range want {
		if !rec.due[i].Equal(want[i]) {
			t.Errorf("due[%d] = %v, want %v", i, rec.due[i], want[i])
		}
	}
	if got := rec.msgs[2]; got.exchange != "celery_delayed_delivery" || got.routingKey != "celery" {
		t.Errorf("retry handed over for %q/%q: the transport decides the delayed route", got.exchange, got.routingKey)
	}
}

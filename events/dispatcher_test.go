package events_test

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gworker/gworker/events"
	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type published struct {
	exchange, key string
	msg           *protocol.RawMessage
}

// recorder is a Publisher that records messages; while block is open it
// blocks every publish until ctx ends.
type recorder struct {
	mu       sync.Mutex
	msgs     []published
	ch       chan published
	block    chan struct{}
	declared []string
}

func newRecorder() *recorder { return &recorder{ch: make(chan published, 1000)} }

func (r *recorder) Publish(ctx context.Context, exchange, key string, msg *protocol.RawMessage) error {
	if r.block != nil {
		select {
		case <-r.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p := published{exchange, key, msg}
	r.mu.Lock()
	r.msgs = append(r.msgs, p)
	r.mu.Unlock()
	r.ch <- p
	return nil
}

func (r *recorder) DeclareExchange(ctx context.Context, name, kind string, durable bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.declared = append(r.declared, name+"/"+kind)
	return nil
}

func next(t *testing.T, r *recorder, key string) published {
	t.Helper()
	for {
		select {
		case p := <-r.ch:
			if p.key == key {
				return p
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no %s event", key)
		}
	}
}

// keys returns the keys of a JSON object in their order.
func keys(t *testing.T, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", b)
	}
	var out []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// vectorKeys returns the keys, in order, of a captured event.
func vectorKeys(t *testing.T, name string) []string {
	t.Helper()
	b := testenv.ReadTestdata(t, name)
	var v map[string]json.RawMessage
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if body, ok := v["body_decoded"]; ok {
		return keys(t, body)
	}
	return keys(t, b)
}

type state struct{}

func (state) ActiveCount() int { return 3 }
func (state) Processed() int64 { return 42 }

func newDispatcher(t *testing.T, r *recorder, cfg events.Config) *events.Dispatcher {
	t.Helper()
	cfg.Publisher = r
	cfg.Hostname = "go@test"
	cfg.State = state{}
	d, err := events.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestWorkerEventsAsCelery(t *testing.T) {
	r := newRecorder()
	d := newDispatcher(t, r, events.Config{HeartbeatInterval: 20 * time.Millisecond})
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	online := next(t, r, "worker.online")
	hb := next(t, r, "worker.heartbeat")
	d.Stop(context.Background())
	offline := next(t, r, "worker.offline")
	if r.declared[0] != "celeryev/topic" {
		t.Fatalf("declared %v", r.declared)
	}
	want := vectorKeys(t, "worker-heartbeat.json")
	for _, p := range []published{online, hb, offline} {
		if p.exchange != "celeryev" || p.msg.DeliveryMode != 1 || p.msg.ContentType != "application/json" || p.msg.Headers["hostname"] != "go@test" {
			t.Fatalf("message %+v", p)
		}
		if got := keys(t, p.msg.Body); !slices.Equal(got, want) {
			t.Fatalf("keys %v, want Celery's %v", got, want)
		}
	}
	v := testenv.PyValue(t, hb.msg.Body).(map[string]any)
	if v["freq"] != 0.02 || v["active"] != int64(3) || v["processed"] != int64(42) || v["type"] != "worker-heartbeat" || v["sw_sys"] != "Linux" {
		t.Fatalf("heartbeat %v", v)
	}
	if _, ok := v["timestamp"].(float64); !ok {
		t.Fatalf("timestamp %T", v["timestamp"])
	}
	if la, ok := v["loadavg"].([]any); !ok || len(la) != 3 {
		t.Fatalf("loadavg %v", v["loadavg"])
	}
	c1 := testenv.PyValue(t, online.msg.Body).(map[string]any)["clock"].(int64)
	c2 := v["clock"].(int64)
	if c2 <= c1 {
		t.Fatalf("clock did not advance: %d then %d", c1, c2)
	}
}

func msg() *protocol.Message {
	eta := time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC)
	return &protocol.Message{ID: "id-1", Task: "tasks.add", Args: []any{int64(2), int64(2)}, Kwargs: map[string]any{},
		RootID: "id-1", ETA: &eta, Headers: map[string]any{"argsrepr": "(2, 2)", "kwargsrepr": "{}"}}
}

func TestTaskEventsAsCelery(t *testing.T) {
	r := newRecorder()
	d := newDispatcher(t, r, events.Config{HeartbeatInterval: -1, TaskEvents: true})
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background())
	m := msg()
	evs := []*worker.TaskEvent{
		{Type: worker.EventTaskReceived, Message: m},
		{Type: worker.EventTaskStarted, Message: m},
		{Type: worker.EventTaskSucceeded, Message: m, Result: int64(4), Runtime: 1500 * time.Millisecond},
		{Type: worker.EventTaskFailed, Message: m, Exception: protocol.NewException("ValueError", "boom", int64(42)), Traceback: "tb"},
		{Type: worker.EventTaskRetried, Message: m, Exception: protocol.NewException("RuntimeError", "x"), Traceback: "tb"},
		{Type: worker.EventTaskRevoked, Message: m, Terminated: true, Signal: "SIGTERM"},
	}
	got := map[string]map[string]any{}
	bodies := map[string][]byte{}
	for _, ev := range evs {
		d.TaskEvent(ev)
		p := next(t, r, "task.multi")
		var list []json.RawMessage
		if err := json.Unmarshal(p.msg.Body, &list); err != nil {
			t.Fatalf("task.multi body is not a list: %s", p.msg.Body)
		}
		for _, raw := range list {
			v := testenv.PyValue(t, raw).(map[string]any)
			got[v["type"].(string)] = v
			bodies[v["type"].(string)] = raw
		}
	}
	for typ := range got {
		if want := vectorKeys(t, "event_"+typ+".json"); !slices.Equal(keys(t, bodies[typ]), want) {
			t.Errorf("%s keys %v, want Celery's %v", typ, keys(t, bodies[typ]), want)
		}
	}
	rc := got["task-received"]
	if rc["args"] != "(2, 2)" || rc["kwargs"] != "{}" || rc["eta"] != "2026-01-02T03:04:05.678901+00:00" || rc["parent_id"] != nil || rc["name"] != "tasks.add" {
		t.Errorf("task-received %v", rc)
	}
	if s := got["task-succeeded"]; s["result"] != "4" || s["runtime"] != 1.5 {
		t.Errorf("task-succeeded %v", s)
	}
	if f := got["task-failed"]; f["exception"] != "ValueError('boom', 42)" || f["traceback"] != "tb" {
		t.Errorf("task-failed %v", f)
	}
	if rv := got["task-revoked"]; rv["terminated"] != true || rv["signum"] != "15" || rv["expired"] != false {
		t.Errorf("task-revoked %v", rv)
	}
}

func TestTaskEventsOffSendNothing(t *testing.T) {
	r := newRecorder()
	d := newDispatcher(t, r, events.Config{HeartbeatInterval: -1})
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	next(t, r, "worker.online")
	d.TaskEvent(&worker.TaskEvent{Type: worker.EventTaskStarted, Message: msg()})
	if prev := d.EnableTaskEvents(true); prev {
		t.Fatal("task events were on")
	}
	d.TaskEvent(&worker.TaskEvent{Type: worker.EventTaskSucceeded, Message: msg()})
	p := next(t, r, "task.multi")
	if !strings.Contains(string(p.msg.Body), "task-succeeded") || strings.Contains(string(p.msg.Body), "task-started") {
		t.Fatalf("body %s", p.msg.Body)
	}
	d.Stop(context.Background())
}

func TestADeadBrokerNeverBlocksTasks(t *testing.T) {
	r := newRecorder()
	r.block = make(chan struct{})
	d := newDispatcher(t, r, events.Config{HeartbeatInterval: -1, TaskEvents: true, QueueSize: 10, PublishTimeout: time.Hour})
	// Start's worker-online blocks until its context ends.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 1000; i++ {
			d.TaskEvent(&worker.TaskEvent{Type: worker.EventTaskStarted, Message: msg()})
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("TaskEvent blocked on a publisher that does not answer")
	}
	// At most the queue and one batch in flight are kept.
	if n := d.Dropped(); n < 1000-10-events.DefaultBatchSize {
		t.Fatalf("dropped %d", n)
	}
	close(r.block)
	d.Stop(context.Background())
}

func TestUTCOffsetIsHoursWestFloored(t *testing.T) {
	for _, c := range []struct {
		east int
		want int
	}{{0, 0}, {2 * 3600, -2}, {5*3600 + 1800, -6}, {-5 * 3600, 5}, {-(3*3600 + 1800), 3}} {
		loc := time.FixedZone("x", c.east)
		if got := events.UTCOffset(time.Now().In(loc)); got != c.want {
			t.Errorf("offset east %ds: got %d, want %d", c.east, got, c.want)
		}
	}
}

package control_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gworker/gworker/control"
	"github.com/gworker/gworker/gworkertest"
	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memTransport is an in-memory control.Transport: fanout and direct
// exchanges routing to subscriptions.
type memTransport struct {
	mu   sync.Mutex
	subs map[*memSub]control.QueueSpec
	kind map[string]string
}

func newMemTransport() *memTransport {
	return &memTransport{subs: map[*memSub]control.QueueSpec{}, kind: map[string]string{}}
}

type memSub struct {
	t    *memTransport
	ch   chan *protocol.RawMessage
	once sync.Once
}

func (s *memSub) Messages() <-chan *protocol.RawMessage { return s.ch }
func (s *memSub) Close() error {
	s.once.Do(func() {
		s.t.mu.Lock()
		delete(s.t.subs, s)
		close(s.ch)
		s.t.mu.Unlock()
	})
	return nil
}

func (t *memTransport) DeclareExchange(ctx context.Context, name, kind string, durable bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if k, ok := t.kind[name]; ok && k != kind {
		return errors.New("PRECONDITION_FAILED")
	}
	t.kind[name] = kind
	return nil
}

func (t *memTransport) Subscribe(ctx context.Context, q control.QueueSpec) (control.Subscription, error) {
	s := &memSub{t: t, ch: make(chan *protocol.RawMessage, 100)}
	t.mu.Lock()
	t.subs[s] = q
	t.mu.Unlock()
	return s, nil
}

func (t *memTransport) Publish(ctx context.Context, exchange, key string, msg *protocol.RawMessage) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	kind, ok := t.kind[exchange]
	if !ok {
		return errors.New("NOT_FOUND: no exchange " + exchange)
	}
	for s, q := range t.subs {
		if q.Exchange == exchange && (kind == "fanout" || q.RoutingKey == key) {
			cp := *msg
			select {
			case s.ch <- &cp:
			default:
			}
		}
	}
	return nil
}

type fixture struct {
	t      *testing.T
	env    *gworkertest.Env
	tr     *memTransport
	node   *control.Node
	client *control.Client
	stop   chan struct{}
	block  chan string
	shut   chan struct{}
}

func newFixture(t *testing.T, tr *memTransport, hostname string) *fixture {
	t.Helper()
	f := &fixture{t: t, tr: tr, stop: make(chan struct{}), block: make(chan string, 10), shut: make(chan struct{}, 1)}
	reg := worker.NewRegistry()
	reg.MustRegister("tasks.add", func(a, b int64) int64 { return a + b }, worker.WithOptions(worker.TaskOptions{RateLimit: "10/s"}))
	if err := reg.Handle("tasks.block", func(ctx context.Context, args []any, kw map[string]any) (any, error) {
		r, _ := worker.RequestFromContext(ctx)
		f.block <- r.ID
		select {
		case <-f.stop:
			return "done", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}); err != nil {
		t.Fatal(err)
	}
	f.env = gworkertest.NewEnv(t, gworkertest.Config{Registry: reg, Worker: worker.Config{Hostname: hostname, Concurrency: 2}})
	if err := f.env.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	node, err := control.New(control.Config{Transport: tr, Worker: f.env.Worker(), Shutdown: func() { f.shut <- struct{}{} },
		Broker: control.BrokerInfo("amqp://guest:pw@127.0.0.1:5672/vh"), Conf: protocol.Dict{{Key: "worker_concurrency", Value: int64(2)}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.node = node
	f.client = control.NewClient(tr, nil, nil)
	t.Cleanup(func() {
		select {
		case <-f.stop:
		default:
			close(f.stop)
		}
		node.Stop()
	})
	return f
}

func (f *fixture) call(method string, args map[string]any) any {
	f.t.Helper()
	replies, err := f.client.Broadcast(context.Background(), method, args,
		control.BroadcastOptions{Reply: true, Destination: []string{f.node.Hostname()}, Timeout: 20 * time.Second})
	if err != nil {
		f.t.Fatalf("%s: %v", method, err)
	}
	if len(replies) != 1 || replies[0].Node != f.node.Hostname() {
		f.t.Fatalf("%s: replies %+v", method, replies)
	}
	return replies[0].Value
}

// jsonKeys returns the keys of a JSON object in order.
func jsonKeys(t *testing.T, v any) []string {
	t.Helper()
	b, err := protocol.MarshalJSON(v)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytesReader(b))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var out []string
	for dec.More() {
		tok, _ := dec.Token()
		out = append(out, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// vectorReply returns the value of the first node in a captured reply.
func vectorReply(t *testing.T, name string) any {
	t.Helper()
	var v struct {
		Body map[string]json.RawMessage `json:"body_decoded"`
	}
	if err := json.Unmarshal(testenv.ReadTestdata(t, name), &v); err != nil {
		t.Fatal(err)
	}
	for _, raw := range v.Body {
		return testenv.PyValue(t, raw)
	}
	t.Fatalf("%s: empty reply", name)
	return nil
}

func TestInspectAsCelery(t *testing.T) {
	f := newFixture(t, newMemTransport(), "go@a")
	if v := f.call("ping", nil); !reflect.DeepEqual(v, map[string]any{"ok": "pong"}) {
		t.Fatalf("ping %v", v)
	}
	ctx := context.Background()
	if _, err := f.env.SendTask(ctx, "tasks.block", nil, nil, producer.TaskID("blk-1")); err != nil {
		t.Fatal(err)
	}
	<-f.block
	act := f.call("active", nil).([]any)
	if len(act) != 1 {
		t.Fatalf("active %v", act)
	}
	want := vectorReply(t, "reply_active.json").([]any)[0]
	if got, w := jsonKeys(t, act[0]), jsonKeys(t, want); !reflect.DeepEqual(got, w) {
		t.Fatalf("active keys %v, want Celery's %v", got, w)
	}
	a := act[0].(map[string]any)
	if a["id"] != "blk-1" || a["acknowledged"] != true || a["hostname"] != "go@a" || a["worker_pid"] == nil {
		t.Fatalf("active %v", a)
	}
	if _, ok := a["time_start"].(float64); !ok {
		t.Fatalf("time_start %T", a["time_start"])
	}
	st := f.call("stats", nil).(map[string]any)
	wantStats := vectorReply(t, "reply_stats.json").(map[string]any)
	for k := range wantStats {
		if _, ok := st[k]; !ok {
			t.Errorf("stats lacks %q", k)
		}
	}
	if st["total"].(map[string]any)["tasks.block"] != int64(1) || st["pool"].(map[string]any)["max-concurrency"] != int64(2) {
		t.Fatalf("stats %v", st)
	}
	if b := st["broker"].(map[string]any); b["virtual_host"] != "vh" || b["userid"] != "guest" || b["port"] != int64(5672) {
		t.Fatalf("broker %v", b)
	}
	q := f.call("query_task", map[string]any{"ids": []any{"blk-1", "nope"}}).(map[string]any)
	if e, ok := q["blk-1"].([]any); !ok || e[0] != "active" || len(q) != 1 {
		t.Fatalf("query_task %v", q)
	}
	reg := f.call("registered", nil).([]any)
	if !reflect.DeepEqual(reg, []any{"tasks.add [rate_limit=10/s]", "tasks.block"}) {
		t.Fatalf("registered %v", reg)
	}
	reg = f.call("registered", map[string]any{"taskinfoitems": []any{"name"}}).([]any)
	if reg[0] != "tasks.add [name=tasks.add]" {
		t.Fatalf("registered with items %v", reg)
	}
	aq := f.call("active_queues", nil).([]any)
	wantQ := vectorReply(t, "reply_active_queues.json").([]any)[0].(map[string]any)
	gotQ := aq[0].(map[string]any)
	name := f.env.Queue()
	for _, m := range []map[string]any{wantQ} {
		m["name"], m["routing_key"] = name, name
		m["exchange"].(map[string]any)["name"] = name
	}
	if !reflect.DeepEqual(gotQ, wantQ) {
		t.Fatalf("active_queues %v\nwant %v", gotQ, wantQ)
	}
	if c := f.call("conf", nil).(map[string]any); c["worker_concurrency"] != int64(2) {
		t.Fatalf("conf %v", c)
	}
	if c := f.call("clock", nil).(map[string]any); c["clock"].(int64) < 1 {
		t.Fatalf("clock %v", c)
	}
	if r := f.call("report", nil).(map[string]any); r["ok"] == "" {
		t.Fatalf("report %v", r)
	}
	if v := f.call("reserved", nil).([]any); len(v) != 0 {
		t.Fatalf("reserved %v", v)
	}
	eta := time.Now().Add(time.Hour)
	if _, err := f.env.SendTask(ctx, "tasks.add", []any{1, 2}, nil, producer.TaskID("eta-1"), producer.ETA(eta)); err != nil {
		t.Fatal(err)
	}
	var sched []any
	for deadline := time.Now().Add(20 * time.Second); len(sched) == 0 && time.Now().Before(deadline); {
		sched = f.call("scheduled", nil).([]any)
	}
	if len(sched) != 1 {
		t.Fatalf("scheduled %v", sched)
	}
	s := sched[0].(map[string]any)
	if s["priority"] != int64(6) || s["request"].(map[string]any)["id"] != "eta-1" || s["eta"] != protocol.FormatTime(eta) {
		t.Fatalf("scheduled %v (eta %s)", s, protocol.FormatTime(eta))
	}
}

func TestControlCommands(t *testing.T) {
	f := newFixture(t, newMemTransport(), "go@b")
	ctx := context.Background()
	if v := f.call("nosuchcmd", nil); !reflect.DeepEqual(v, map[string]any{"error": "KeyError('nosuchcmd')"}) {
		t.Fatalf("unknown command %v", v)
	}
	if v := f.call("rate_limit", map[string]any{"task_name": "nope", "rate_limit": "1/s"}); !reflect.DeepEqual(v, map[string]any{"error": "unknown task"}) {
		t.Fatalf("rate_limit %v", v)
	}
	if v := f.call("rate_limit", map[string]any{"task_name": "tasks.add", "rate_limit": "5/m"}); !reflect.DeepEqual(v, map[string]any{"ok": "new rate limit set successfully"}) {
		t.Fatalf("rate_limit %v", v)
	}
	if v := f.call("time_limit", map[string]any{"task_name": "tasks.add", "soft": 1.5}); !reflect.DeepEqual(v, map[string]any{"ok": "time limits set successfully"}) {
		t.Fatalf("time_limit %v", v)
	}
	if v := f.call("autoscale", map[string]any{"max": 3, "min": 1}); !reflect.DeepEqual(v, map[string]any{"error": "ValueError('Autoscale not enabled')"}) {
		t.Fatalf("autoscale %v", v)
	}
	if v := f.call("pool_grow", map[string]any{"n": 2}); !reflect.DeepEqual(v, map[string]any{"ok": "pool will grow"}) || f.env.Worker().Inspector().Concurrency() != 4 {
		t.Fatalf("pool_grow %v", v)
	}
	if v := f.call("pool_shrink", nil); !reflect.DeepEqual(v, map[string]any{"ok": "pool will shrink"}) || f.env.Worker().Inspector().Concurrency() != 3 {
		t.Fatalf("pool_shrink %v", v)
	}
	if v := f.call("revoke", map[string]any{"task_id": "r-1", "terminate": false, "signal": "SIGTERM"}); !reflect.DeepEqual(v, map[string]any{"ok": "tasks r-1 flagged as revoked"}) {
		t.Fatalf("revoke %v", v)
	}
	if v := f.call("revoke", map[string]any{"task_id": []any{"x", "y"}, "terminate": true}); !reflect.DeepEqual(v, map[string]any{"ok": "terminate: tasks unknown"}) {
		t.Fatalf("terminate unknown %v", v)
	}
	if v := f.call("revoked", nil).([]any); len(v) != 3 {
		t.Fatalf("revoked %v", v)
	}
	res, err := f.env.SendTask(ctx, "tasks.block", nil, nil, producer.TaskID("run-1"))
	if err != nil {
		t.Fatal(err)
	}
	<-f.block
	if v := f.call("revoke", map[string]any{"task_id": "run-1", "terminate": true, "signal": "SIGKILL"}); !reflect.DeepEqual(v, map[string]any{"ok": "terminate: run-1"}) {
		t.Fatalf("terminate %v", v)
	}
	m, err := f.env.Wait(ctx, res.ID())
	if err != nil || m.Status != "REVOKED" {
		t.Fatalf("terminated task: %v %v", m, err)
	}
	if v := f.call("add_consumer", map[string]any{"queue": "extra-q"}); !reflect.DeepEqual(v, map[string]any{"ok": "add consumer extra-q"}) {
		t.Fatalf("add_consumer %v", v)
	}
	if qs := f.env.Worker().Inspector().Queues(); len(qs) != 2 {
		t.Fatalf("queues %v", qs)
	}
	if v := f.call("cancel_consumer", map[string]any{"queue": "extra-q"}); !reflect.DeepEqual(v, map[string]any{"ok": "no longer consuming from extra-q"}) {
		t.Fatalf("cancel_consumer %v", v)
	}
	if v := f.call("enable_events", nil); v.(map[string]any)["error"] == nil {
		t.Fatalf("enable_events without events: %v", v)
	}
	if _, err := f.client.Broadcast(ctx, "shutdown", nil, control.BroadcastOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.shut:
	case <-time.After(20 * time.Second):
		t.Fatal("shutdown not called")
	}
}

func TestDestinationPatternAndBadMessages(t *testing.T) {
	tr := newMemTransport()
	a := newFixture(t, tr, "go@a")
	b := newFixture(t, tr, "go@b")
	ctx := context.Background()
	all, err := a.client.Broadcast(ctx, "ping", nil, control.BroadcastOptions{Reply: true, Limit: 2, Timeout: 20 * time.Second})
	if err != nil || len(all) != 2 {
		t.Fatalf("broadcast: %v %v", all, err)
	}
	only, err := a.client.Broadcast(ctx, "ping", nil, control.BroadcastOptions{Reply: true, Destination: []string{"go@b"}, Timeout: 20 * time.Second})
	if err != nil || len(only) != 1 || only[0].Node != "go@b" {
		t.Fatalf("destination: %v %v", only, err)
	}
	pat, err := a.client.Broadcast(ctx, "ping", nil, control.BroadcastOptions{Reply: true, Pattern: "*@a", Matcher: "glob", Limit: 1, Timeout: 20 * time.Second})
	if err != nil || len(pat) != 1 || pat[0].Node != "go@a" {
		t.Fatalf("pattern: %v %v", pat, err)
	}
	// Nobody matches: no reply.
	if _, err := a.client.Broadcast(ctx, "ping", nil, control.BroadcastOptions{Reply: true, Destination: []string{"go@zz"}, Timeout: 100 * time.Millisecond}); !errors.Is(err, control.ErrNoReply) {
		t.Fatalf("no node: %v", err)
	}
	for _, body := range []string{`not json`, `[1, 2]`, `{"arguments": {}}`, `{"method": "ping", "arguments": [1]}`, `{"method": 5}`,
		`{"method": "ping", "destination": 7}`, `{"method": "ping", "reply_to": {"exchange": "no.such.exchange.kind", "routing_key": "x"}, "ticket": "t"}`} {
		b.node.Handle(ctx, &protocol.RawMessage{ContentType: "application/json", Body: []byte(body)})
	}
	b.node.Handle(ctx, &protocol.RawMessage{ContentType: "application/x-python-serialize", Body: []byte("x")})
	if n := b.node.BadMessages(); n < 7 {
		t.Fatalf("bad messages counted: %d", n)
	}
	if v := b.call("ping", nil); !reflect.DeepEqual(v, map[string]any{"ok": "pong"}) {
		t.Fatalf("ping after bad input %v", v)
	}
}

func TestMingleAndStateDB(t *testing.T) {
	tr := newMemTransport()
	a := newFixture(t, tr, "go@a")
	a.env.Worker().Revoke([]string{"gone-1", "gone-2"}, false, "")
	rs := worker.NewRevokedSet(0, 0)
	nodes, err := control.NewClient(tr, nil, nil).Mingle(context.Background(), "go@new", rs, 500*time.Millisecond)
	if err != nil || len(nodes) != 1 || nodes[0] != "go@a" {
		t.Fatalf("mingle: %v %v", nodes, err)
	}
	if !rs.Contains("gone-1") || !rs.Contains("gone-2") {
		t.Fatalf("mingle did not bring the revoked ids: %v", rs.IDs())
	}
	path := filepath.Join(t.TempDir(), "worker.state")
	if n, err := control.LoadState(path, rs); err != nil || n != 0 {
		t.Fatalf("missing state file: %d %v", n, err)
	}
	if err := control.SaveState(path, rs); err != nil {
		t.Fatal(err)
	}
	back := worker.NewRevokedSet(0, 0)
	if n, err := control.LoadState(path, back); err != nil || n != 2 || !back.Contains("gone-2") {
		t.Fatalf("load: %d %v %v", n, err, back.IDs())
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

package amqptransport

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
)

// DelayLevelName is delayLevel, for the tests' readability.
var DelayLevelName = delayLevel

// binaryKey is kombu's calculate_routing_key written another way.
func binaryKey(n int64, key string) string {
	return strings.Join(strings.Split(fmt.Sprintf("%028b", n), ""), ".") + "." + key
}

func TestDelayRoutingKey(t *testing.T) {
	// Keys printed by kombu 5.5.4's calculate_routing_key(n, 'q.a').
	kombu := map[int64]string{
		1:         "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.q.a",
		5:         "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.1.q.a",
		1000:      "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.1.1.1.1.0.1.0.0.0.q.a",
		1 << 27:   "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.q.a",
		1<<28 - 1: "1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.q.a",
	}
	for n, want := range kombu {
		got, ok := DelayRoutingKey(time.Duration(n)*time.Second, "q.a")
		if !ok || got != want {
			t.Errorf("DelayRoutingKey(%ds) = %q, %v; want %q", n, got, ok, want)
		}
	}
	for _, c := range []struct {
		d    time.Duration
		key  string
		want string // "" means not ok
	}{
		{1900 * time.Millisecond, "q", binaryKey(1, "q")}, // truncated, as int(countdown)
		{999 * time.Millisecond, "q", ""},
		{0, "q", ""},
		{-time.Hour, "q", ""},
		{time.Second, "", ""},
		{MaxDelay + time.Hour, "q", binaryKey(1<<28-1, "q")},
		{3 * time.Second, binaryKey(9, "q"), binaryKey(3, "q")},                   // old prefix replaced
		{3 * time.Second, binaryKey(9, binaryKey(4, "q.x")), binaryKey(3, "q.x")}, // stacked prefixes
		{time.Second, strings.Repeat("k", 199), binaryKey(1, strings.Repeat("k", 199))},
		{time.Second, strings.Repeat("k", 200), ""}, // over 255 bytes
	} {
		got, ok := DelayRoutingKey(c.d, c.key)
		if (c.want == "") != !ok || got != c.want {
			t.Errorf("DelayRoutingKey(%v, %q) = %q, %v; want %q", c.d, c.key, got, ok, c.want)
		}
	}
}

func TestStripDelayPrefix(t *testing.T) {
	for _, c := range []struct {
		key, want string
		stripped  bool
	}{
		{binaryKey(6, "celery"), "celery", true},
		{binaryKey(6, "a.b.c"), "a.b.c", true},
		{binaryKey(1, binaryKey(2, "q")), "q", true},
		{"celery", "celery", false},
		{"", "", false},
		{strings.TrimSuffix(binaryKey(6, "x"), "x"), strings.TrimSuffix(binaryKey(6, "x"), "x"), false}, // no key after it
		{"0.1." + "celery", "0.1.celery", false},                                                        // 2 words, not 28
		{strings.Replace(binaryKey(6, "q"), "1", "2", 1), strings.Replace(binaryKey(6, "q"), "1", "2", 1), false},
		{strings.Replace(binaryKey(6, "q"), ".", "-", 1), strings.Replace(binaryKey(6, "q"), ".", "-", 1), false},
		{binaryKey(6, "q")[2:], binaryKey(6, "q")[2:], false}, // 27 words
	} {
		got, stripped := StripDelayPrefix(c.key)
		if got != c.want || stripped != c.stripped {
			t.Errorf("StripDelayPrefix(%q) = %q, %v; want %q, %v", c.key, got, stripped, c.want, c.stripped)
		}
	}
}

func TestIsDelayExchange(t *testing.T) {
	for name, want := range map[string]bool{
		"celery_delayed_0": true, "celery_delayed_27": true, "celery_delayed_delivery": true,
		"celery_delayed_28": false, "celery_delayed_": false, "celery_delayed_01": false,
		"celery_delayed_-1": false, "celery": false, "": false,
	} {
		if got := isDelayExchange(name); got != want {
			t.Errorf("isDelayExchange(%q) = %v", name, got)
		}
	}
}

// The level declarations carry exactly kombu 5.5.4's arguments.
func TestDelayLevelQueue(t *testing.T) {
	q := delayLevelQueue(27, QueueTypeQuorum)
	want := map[string]any{"x-queue-type": "quorum", "x-overflow": "reject-publish",
		"x-message-ttl": int64(134217728000), "x-dead-letter-exchange": "celery_delayed_26",
		"x-dead-letter-strategy": "at-least-once"}
	if fmt.Sprint(q.Arguments) != fmt.Sprint(want) || q.RoutingKey != "1.#" || q.Exchange != "celery_delayed_27" ||
		q.ExchangeType != "topic" || !q.Durable || !q.ExchangeDurable || q.AutoDelete || q.Exclusive {
		t.Errorf("level 27: %+v", q)
	}
	q = delayLevelQueue(0, QueueTypeClassic)
	want = map[string]any{"x-queue-type": "classic", "x-overflow": "reject-publish",
		"x-message-ttl": int64(1000), "x-dead-letter-exchange": "celery_delayed_delivery"}
	if fmt.Sprint(q.Arguments) != fmt.Sprint(want) || q.RoutingKey != strings.Repeat("*.", 27)+"1.#" {
		t.Errorf("level 0: %+v", q)
	}
}

func TestPlanDelay(t *testing.T) {
	targets := map[string]delayTarget{
		"qq":  {q: Queue{Name: "qq", Exchange: "qq", RoutingKey: "qq"}, exchangeType: "topic", quorum: true},
		"fq":  {q: Queue{Name: "fq", Exchange: "fan", RoutingKey: "fq"}, exchangeType: "fanout", quorum: true},
		"dq":  {q: Queue{Name: "dq", Exchange: "dq", RoutingKey: "dq"}, exchangeType: "direct", quorum: true},
		"cq":  {q: Queue{Name: "cq", Exchange: "cq", RoutingKey: "cq"}, exchangeType: "topic"},
		"rk":  {q: Queue{Name: "rk", Exchange: "tasks", RoutingKey: "tasks.rk"}, exchangeType: "topic", quorum: true},
		"unk": {q: Queue{Name: "unk", Exchange: "unk", RoutingKey: "unk"}, quorum: true},
	}
	b := &Broker{targets: targets}
	entry := DelayEntryExchange
	for _, c := range []struct {
		exchange, key string
		countdown     time.Duration
		wantEx        string
		wantKey       string
		delayed       bool
	}{
		{"", "qq", 5 * time.Second, entry, binaryKey(5, "qq"), true},
		{"", "qq", 900 * time.Millisecond, "", "qq", false}, // held by the worker
		{"", "qq", 0, "", "qq", false},
		{"qq", "qq", 5 * time.Second, entry, binaryKey(5, "qq"), true},
		{"fan", "anything", 2 * time.Second, entry, binaryKey(2, "fq"), true},
		{"tasks", "tasks.rk", 2 * time.Second, entry, binaryKey(2, "tasks.rk"), true},
		{"", "rk", 2 * time.Second, entry, binaryKey(2, "tasks.rk"), true},
		{"", "dq", 5 * time.Second, "", "dq", false},   // direct exchange
		{"", "cq", 5 * time.Second, "", "cq", false},   // classic queue
		{"", "unk", 5 * time.Second, "", "unk", false}, // exchange type unknown
		{"", "nope", 5 * time.Second, "", "nope", false},
		{"tasks", "other", 5 * time.Second, "tasks", "other", false},
		// Delivered through the topology and published again.
		{"celery_delayed_delivery", binaryKey(3, "qq"), 7 * time.Second, entry, binaryKey(7, "qq"), true},
		{"celery_delayed_4", binaryKey(30, "qq"), 0, DelayDeliveryExchange, "qq", false},
		{"celery_delayed_0", binaryKey(3, "zz"), 500 * time.Millisecond, DelayDeliveryExchange, "zz", false},
		{"celery_delayed_0", binaryKey(3, binaryKey(9, "zz")), 2 * time.Second, entry, binaryKey(2, "zz"), true},
		// A key without a valid prefix is routed as it is, undelayed.
		{"celery_delayed_delivery", "0.1.qq", 7 * time.Second, DelayDeliveryExchange, "0.1.qq", false},
	} {
		p := planDelay(c.exchange, c.key, c.countdown, b.findTarget)
		if p.exchange != c.wantEx || p.key != c.wantKey || p.delayed != c.delayed {
			t.Errorf("planDelay(%q, %q, %v) = %q %q %v; want %q %q %v", c.exchange, c.key, c.countdown,
				p.exchange, p.key, p.delayed, c.wantEx, c.wantKey, c.delayed)
		}
	}
}

func TestWithoutDeathHeaders(t *testing.T) {
	in := &protocol.RawMessage{Headers: map[string]any{"id": "x", "x-death": "not even a list",
		"x-first-death-queue": "celery_delayed_0", "x-last-death-reason": 7}}
	out := withoutDeathHeaders(in)
	if len(out.Headers) != 1 || out.Headers["id"] != "x" {
		t.Errorf("headers after: %v", out.Headers)
	}
	if len(in.Headers) != 4 {
		t.Errorf("the caller's headers were changed: %v", in.Headers)
	}
	plain := &protocol.RawMessage{Headers: map[string]any{"id": "y"}}
	if withoutDeathHeaders(plain) != plain {
		t.Error("a message without death headers was copied")
	}
}

func TestExchangeTypeFromRefusal(t *testing.T) {
	for reason, want := range map[string]string{
		"PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'x' in vhost '/': received 'direct' but current is 'topic'":  "topic",
		"PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'x' in vhost '/': received 'direct' but current is 'fanout'": "fanout",
		"PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'x' in vhost '/': received 'false' but current is 'true'": "direct",
		"something else": "",
	} {
		if got := exchangeTypeFromRefusal(reason, "direct"); got != want {
			t.Errorf("exchangeTypeFromRefusal(%q) = %q, want %q", reason, got, want)
		}
	}
}

// runKombu55 runs a Python script with Celery 5.5.3's kombu and args.
func runKombu55(t *testing.T, script string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(testenv.Python(), append([]string{"-c", script}, args...)...)
	cmd.Env = testenv.Celery55Environ(t, os.Environ())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// kombuDelayed is what a Celery 5.5.3 worker declares when it starts on a
// quorum queue of a topic exchange: the topology and the queue's bindings.
const kombuDelayed = `
import sys
from kombu import Connection, Exchange, Queue
from kombu.transport.native_delayed_delivery import (
    declare_native_delayed_delivery_exchanges_and_queues, bind_queue_to_native_delayed_delivery_exchange)
with Connection(sys.argv[1]) as conn:
    declare_native_delayed_delivery_exchanges_and_queues(conn, 'quorum')
    q = Queue(sys.argv[2], Exchange(sys.argv[2], type='topic'), routing_key=sys.argv[2],
              queue_arguments={'x-queue-type': 'quorum'})
    q(conn.channel()).declare()
    bind_queue_to_native_delayed_delivery_exchange(conn, q)
print("declared")
`

// delayFixture is a Broker on a private vhost whose task queues are quorum
// queues of topic exchanges, as a Celery 5.5 app declares them for native
// delayed delivery.
type delayFixture struct {
	t     *testing.T
	vhost string
	url   string
	b     *Broker
	logs  *observer.ObservedLogs
}

// classicLevels makes the levels classic queues, which the broker declares
// much faster than quorum ones, for tests whose point is elsewhere.
func classicLevels(c *Config) { c.DelayedDeliveryQueueType = QueueTypeClassic }

func newDelayFixture(t *testing.T, mod ...func(*Config)) *delayFixture {
	t.Helper()
	vhost, url := vhostURL(t)
	return newDelayFixtureOn(t, vhost, url, mod...)
}

func newDelayFixtureOn(t *testing.T, vhost, url string, mod ...func(*Config)) *delayFixture {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	cfg := Config{URL: url, Logger: zap.New(core), ConnectionName: uniqueName(t, "conn"),
		DefaultQueueType: QueueTypeQuorum, DefaultExchangeType: "topic",
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond}
	for _, f := range mod {
		f(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Broker.Close: %v", err)
		}
		if t.Failed() {
			for _, e := range logs.All() {
				t.Logf("%s %s %v", e.Level, e.Message, e.ContextMap())
			}
		}
	})
	return &delayFixture{t: t, vhost: vhost, url: url, b: b, logs: logs}
}

// admin opens a plain connection to the fixture's vhost.
func (f *delayFixture) admin() *amqp.Connection {
	f.t.Helper()
	c, err := amqp.Dial(f.url)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	return c
}

// exists reports whether a queue exists (passive declaration).
func exists(t *testing.T, c *amqp.Connection, queue string) bool {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	_, err = ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	return err == nil
}

func taskMsg(id string, headers map[string]any) *protocol.RawMessage {
	h := map[string]any{"id": id, "task": "tasks.t"}
	for k, v := range headers {
		h[k] = v
	}
	return &protocol.RawMessage{Headers: h, ContentType: protocol.ContentTypeJSON, DeliveryMode: 2,
		Body: []byte(`[[], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]`)}
}

// wantDelivery waits for the next delivery, checks its task id and acks it.
func wantDelivery(t *testing.T, c *Consumer, id string) *Delivery {
	t.Helper()
	d := recv(t, c, 30*time.Second)
	if got := d.Message.Headers["id"]; got != id {
		t.Fatalf("delivered %v (exchange %q key %q), want %s", got, d.Message.Exchange, d.Message.RoutingKey, id)
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
	return d
}

// deathCount returns how many x-death entries a delivery has and the
// largest count among them.
func deathCount(d *Delivery) (entries int, maxCount int64) {
	list, _ := d.Message.Headers["x-death"].([]any)
	for _, e := range list {
		m, _ := e.(map[string]any)
		if n, _ := m["count"].(int64); n > maxCount {
			maxCount = n
		}
	}
	return len(list), maxCount
}

// A task consumer of a quorum queue declares the topology and binds its
// queue before Consume returns; a message published with a countdown goes
// through the levels; retried from where it was delivered it goes through
// them again with one prefix and no earlier x-death (which would make the
// broker drop it as a dead-letter cycle), or straight to the delivery
// exchange when due at once; and a Celery 5.5.3 worker starting afterwards
// meets no PRECONDITION_FAILED.
func TestDelayedDeliveryConsumer(t *testing.T) {
	f := newDelayFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tc, err := f.b.Consume(ctx, []string{"dq"}, 8)
	if err != nil {
		t.Fatal(err)
	}
	c := tc.(*Consumer)
	defer c.Close()

	due := time.Now().Add(1500 * time.Millisecond)
	if err := f.b.PublishDelayed(ctx, "", "dq", taskMsg("t1", nil), due); err != nil {
		t.Fatal(err)
	}
	d := wantDelivery(t, c, "t1")
	if !isDelayExchange(d.Message.Exchange) || d.Message.RoutingKey != binaryKey(1, "dq") {
		t.Fatalf("delivered from %q with key %q, want a level of the topology and key %q", d.Message.Exchange, d.Message.RoutingKey, binaryKey(1, "dq"))
	}
	if n, _ := deathCount(d); n == 0 {
		t.Fatalf("no x-death on a message that went through the levels: %v", d.Message.Headers)
	}

	// Retried with a countdown, where it was delivered from: the same
	// level queue (celery_delayed_0) again.
	if err := f.b.PublishDelayed(ctx, d.Message.Exchange, d.Message.RoutingKey, d.Raw(), time.Now().Add(1200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	d2 := wantDelivery(t, c, "t1")
	if d2.Message.RoutingKey != binaryKey(1, "dq") {
		t.Errorf("retried message delivered with key %q, want %q", d2.Message.RoutingKey, binaryKey(1, "dq"))
	}
	if n, max := deathCount(d2); n != 1 || max != 1 {
		t.Errorf("retried message carries %d x-death entries (largest count %d), want 1 fresh entry", n, max)
	}

	// Retried at once: through the delivery exchange with the bare key.
	if err := f.b.PublishDelayed(ctx, d2.Message.Exchange, d2.Message.RoutingKey, d2.Raw(), time.Time{}); err != nil {
		t.Fatal(err)
	}
	d3 := wantDelivery(t, c, "t1")
	if d3.Message.Exchange != DelayDeliveryExchange || d3.Message.RoutingKey != "dq" {
		t.Errorf("retried at once: from %q with key %q, want %q and \"dq\"", d3.Message.Exchange, d3.Message.RoutingKey, DelayDeliveryExchange)
	}
	if _, ok := d3.Message.Headers["x-death"]; ok {
		t.Errorf("x-death published again: %v", d3.Message.Headers["x-death"])
	}

	// Celery 5.5.3's own declarations are equivalent to gworker's.
	if out, err := runKombu55(t, kombuDelayed, f.url, "dq"); err != nil {
		t.Fatalf("kombu 5.5.4 after gworker: %v\n%s", err, out)
	}
}

// The reverse order: a Celery 5.5.3 worker's declarations first, then
// gworker's, which the broker takes as they are (nothing adopted).
func TestDelayedDeliveryAfterKombu(t *testing.T) {
	vhost, url := vhostURL(t)
	if out, err := runKombu55(t, kombuDelayed, url, "kq"); err != nil {
		t.Fatalf("kombu 5.5.4: %v\n%s", err, out)
	}
	f := newDelayFixtureOn(t, vhost, url)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tc, err := f.b.Consume(ctx, []string{"kq"}, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	for _, e := range f.logs.FilterLevelExact(zap.WarnLevel).All() {
		t.Errorf("WARN: %s %v", e.Message, e.ContextMap())
	}
	if err := f.b.PublishDelayed(ctx, "", "kq", taskMsg("k1", nil), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if d := wantDelivery(t, tc.(*Consumer), "k1"); d.Message.RoutingKey != binaryKey(1, "kq") {
		t.Errorf("delivered with key %q", d.Message.RoutingKey)
	}
}

// A producer that consumes nothing declares the topology and binds its
// target queue itself before its first delayed publish.
func TestDelayedPublishWithoutConsumer(t *testing.T) {
	f := newDelayFixture(t, classicLevels)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := f.b.DeclareTaskQueue(ctx, "pq"); err != nil {
		t.Fatal(err)
	}
	if err := f.b.PublishDelayed(ctx, "", "pq", taskMsg("p1", nil), time.Now().Add(1100*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	c, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{f.b.TaskQueue("pq")}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if d := wantDelivery(t, c, "p1"); d.Message.RoutingKey != binaryKey(1, "pq") || !isDelayExchange(d.Message.Exchange) {
		t.Errorf("delivered from %q with key %q", d.Message.Exchange, d.Message.RoutingKey)
	}
}

// Messages that came through the topology with a key that is not 28
// binary words plus a key, or with an x-death that is not a list of
// tables, are delivered and published again like any other.
func TestDelayedBadInput(t *testing.T) {
	f := newDelayFixture(t, classicLevels)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tc, err := f.b.Consume(ctx, []string{"bq"}, 8)
	if err != nil {
		t.Fatal(err)
	}
	c := tc.(*Consumer)
	defer c.Close()
	ch, err := f.admin().Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	pub := func(exchange, key, id string, h amqp.Table) {
		t.Helper()
		h["id"], h["task"] = id, "tasks.t"
		if err := ch.PublishWithContext(ctx, exchange, key, false, false, amqp.Publishing{Headers: h, Body: []byte("[[], {}, {}]"),
			ContentType: protocol.ContentTypeJSON}); err != nil {
			t.Fatal(err)
		}
	}
	// "#.bq" matches this key: it reaches the queue with 2 words only.
	pub(DelayDeliveryExchange, "0.1.bq", "short", amqp.Table{})
	d := wantDelivery(t, c, "short")
	if err := f.b.PublishDelayed(ctx, d.Message.Exchange, d.Message.RoutingKey, d.Raw(), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if d := wantDelivery(t, c, "short"); d.Message.Exchange != DelayDeliveryExchange || d.Message.RoutingKey != "0.1.bq" {
		t.Errorf("published again from %q with %q", d.Message.Exchange, d.Message.RoutingKey)
	}
	for i, bad := range []any{"garbage", []any{int32(1), "x"}, amqp.Table{"queue": int32(5)}, []any{amqp.Table{"count": "many"}}} {
		id := fmt.Sprintf("death%d", i)
		pub("", "bq", id, amqp.Table{"x-death": bad, "x-first-death-queue": int32(3)})
		d := wantDelivery(t, c, id)
		if err := f.b.PublishDelayed(ctx, "", "bq", d.Raw(), time.Now().Add(time.Second)); err != nil {
			t.Fatalf("x-death %v: %v", bad, err)
		}
		d = wantDelivery(t, c, id)
		if n, max := deathCount(d); n != 1 || max != 1 || d.Message.Headers["x-first-death-queue"] != DelayLevelName(0) {
			t.Errorf("x-death %v published again, delivered with %v", bad, d.Message.Headers)
		}
	}
}

// A failover list whose second URL names another node (here another
// virtual host): the consumer sets delayed delivery up where it is
// connected before Consume returns, and on the other URL in the
// background, declaring the consumed queue there too.
func TestDelayedDeliveryEveryURL(t *testing.T) {
	_, url1 := vhostURL(t)
	_, url2 := vhostURL(t)
	f := newDelayFixtureOn(t, "", url1+";"+url2, classicLevels)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tc, err := f.b.Consume(ctx, []string{"eq"}, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	c1 := rawDial(t, url1)
	for _, q := range []string{"eq", DelayLevelName(27), DelayLevelName(0)} {
		if !exists(t, c1, q) {
			t.Errorf("%s missing on the first URL when Consume returned", q)
		}
	}
	c2 := rawDial(t, url2)
	eventually(t, 30*time.Second, "topology and queue on the second URL", func() bool {
		return exists(t, c2, DelayLevelName(0)) && exists(t, c2, "eq")
	})
	// The bindings are there too: the delivery exchange routes to eq.
	ch, err := c2.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	eventually(t, 30*time.Second, "a message routed to eq through the delivery exchange on the second URL", func() bool {
		if err := ch.PublishWithContext(ctx, DelayDeliveryExchange, "eq", false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		_, ok, err := ch.Get("eq", true)
		return err == nil && ok
	})
}

func rawDial(t *testing.T, url string) *amqp.Connection {
	t.Helper()
	c, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A set-up the broker refuses (no permission to configure celery_delayed_*)
// is logged and retried, never fatal: the consumer consumes, a delayed
// publish goes out undelayed, and once the permission is granted the
// topology appears.
func TestDelayedDeliveryRefused(t *testing.T) {
	vhost, url := vhostURL(t)
	setPerm := func(configure string) {
		t.Helper()
		if out, err := exec.Command("rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", configure, ".*", ".*").CombinedOutput(); err != nil {
			t.Fatalf("rabbitmqctl set_permissions: %v\n%s", err, out)
		}
	}
	setPerm("^(?!celery_delayed).*")
	f := newDelayFixtureOn(t, vhost, url, classicLevels)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tc, err := f.b.Consume(ctx, []string{"rq"}, 8)
	if err != nil {
		t.Fatalf("Consume failed on a refused delayed delivery set-up: %v", err)
	}
	c := tc.(*Consumer)
	defer c.Close()
	if n := f.logs.FilterMessageSnippet("cannot set up native delayed delivery").Len(); n == 0 {
		t.Error("the refusal was not logged")
	}
	if err := f.b.PublishDelayed(ctx, "", "rq", taskMsg("r1", nil), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if d := wantDelivery(t, c, "r1"); d.Message.Exchange != "" || d.Message.RoutingKey != "rq" {
		t.Errorf("undelayed publish delivered from %q with %q", d.Message.Exchange, d.Message.RoutingKey)
	}
	setPerm(".*")
	adm := f.admin()
	eventually(t, time.Minute, "topology declared once permitted", func() bool { return exists(t, adm, DelayLevelName(0)) })
	eventually(t, 30*time.Second, "delayed route through the topology", func() bool {
		id := "r2-" + testenv.Suffix()
		if err := f.b.PublishDelayed(ctx, "", "rq", taskMsg(id, nil), time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		d := wantDelivery(t, c, id)
		return isDelayExchange(d.Message.Exchange)
	})
}

// The type of a task queue's exchange is what the broker has: the one
// declared, or the one of an exchange that existed with another type.
func TestDeclareFindsExchangeType(t *testing.T) {
	f := newDelayFixture(t, func(c *Config) { c.DefaultExchangeType, c.DefaultQueueType = "", "" })
	ch, err := f.admin().Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if err := ch.ExchangeDeclare("tx", "fanout", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := f.b.main.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"tx": "fanout", "fresh": "direct"} {
		d, err := f.b.declareOrAdopt(ctx, s.conn, f.b.TaskQueue(name))
		if err != nil {
			t.Fatal(err)
		}
		if d.exchangeType != want {
			t.Errorf("%s: exchange type %q, want %q", name, d.exchangeType, want)
		}
	}
}

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gworker/gworker/internal/testing/testenv"
)

// malformedCase is one bad message of the reliability catalogue.
type malformedCase struct {
	name        string
	contentType string // defaults to application/json
	encoding    string // defaults to utf-8
	body        []byte
	headers     func(h amqp.Table) // edits valid protocol-2 headers
	// hasID says that the message carries a readable task id, so the worker
	// must store FAILURE under it.
	hasID bool
}

func validHeaders(id string) amqp.Table {
	return amqp.Table{
		"lang": "py", "task": "tasks.add", "id": id, "shadow": nil, "eta": nil, "expires": nil,
		"group": nil, "group_index": nil, "retries": int32(0), "timelimit": []any{nil, nil},
		"root_id": id, "parent_id": nil, "argsrepr": "(1, 2)", "kwargsrepr": "{}",
		"origin": "gen1@integration", "ignore_result": false,
	}
}

const embed = `{"callbacks": null, "errbacks": null, "chain": null, "chord": null}`

func malformedCases() []malformedCase {
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	return []malformedCase{
		{name: "invalid-json", body: []byte(`{not json`), hasID: true},
		{name: "body-object", body: []byte(`{"a": 1}`), hasID: true},
		{name: "body-two-elements", body: []byte(`[1, 2]`), hasID: true},
		{name: "body-null", body: []byte(`null`), hasID: true},
		{name: "body-empty", body: []byte{}, hasID: true},
		{name: "pickle", contentType: "application/x-python-serialize", encoding: "binary",
			body: []byte("\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02e}\x94N\x87\x94."), hasID: true},
		{name: "yaml", contentType: "application/x-yaml", body: []byte("- [1, 2]\n- {}\n- {}\n"), hasID: true},
		{name: "unknown-content-type", contentType: "application/x-foo", body: []byte(`[[1, 2], {}, ` + embed + `]`), hasID: true},
		{name: "missing-id", body: []byte(`[[1, 2], {}, ` + embed + `]`),
			headers: func(h amqp.Table) { delete(h, "id") }},
		{name: "missing-task-header", body: []byte(`[[1, 2], {}, ` + embed + `]`),
			headers: func(h amqp.Table) { delete(h, "task") }},
		{name: "bad-eta", body: []byte(`[[1, 2], {}, ` + embed + `]`), hasID: true,
			headers: func(h amqp.Table) { h["eta"] = "not-a-date" }},
		{name: "eta-int", body: []byte(`[[1, 2], {}, ` + embed + `]`), hasID: true,
			headers: func(h amqp.Table) { h["eta"] = int32(12345) }},
		{name: "bad-expires", body: []byte(`[[1, 2], {}, ` + embed + `]`), hasID: true,
			headers: func(h amqp.Table) { h["expires"] = "garbage" }},
		{name: "timelimit-string", body: []byte(`[[1, 2], {}, ` + embed + `]`), hasID: true,
			headers: func(h amqp.Table) { h["timelimit"] = "abc" }},
		{name: "args-string", body: []byte(`["12", {}, ` + embed + `]`), hasID: true},
		{name: "kwargs-list", body: []byte(`[[1, 2], [], ` + embed + `]`), hasID: true},
		{name: "zlib-header-plain-body", body: []byte(`[[1, 2], {}, ` + embed + `]`), hasID: true,
			headers: func(h amqp.Table) { h["compression"] = "application/x-gzip" }},
		{name: "unknown-compression", body: []byte(`[[1, 2], {}, ` + embed + `]`), hasID: true,
			headers: func(h amqp.Table) { h["compression"] = "application/x-foo" }},
		{name: "non-utf8-json", body: []byte("[[\"\xff\xfe\xfd\", 2], {}, " + embed + "]"), hasID: true},
		{name: "deep-nesting", body: []byte(`[[` + deep + `], {}, ` + embed + `]`), hasID: true},
		{name: "task-not-a-string", body: []byte(`[[1, 2], {}, ` + embed + `]`), hasID: true,
			headers: func(h amqp.Table) { h["task"] = int32(5) }},
		{name: "foreign-message", body: []byte(`{"hello": "world"}`),
			headers: func(h amqp.Table) { clear(h) }},
	}
}

// TestMalformedMessages publishes every bad input of the reliability
// catalogue to a worker whose queue dead-letters rejected messages. Each
// one must be rejected without requeue (so it lands in the dead-letter
// queue), a FAILURE must be stored when the task id is readable, and the
// worker must stay up and keep running valid tasks.
func TestMalformedMessages(t *testing.T) {
	q := uniqueQueue(t, "malformed")
	dlx, dlq := q+".dlx", q+".dlq"
	policy := "dlx-" + q
	if out, err := rabbitmqctl("set_policy", "-p", env.vhost, "--apply-to", "queues", policy,
		"^"+q+"$", `{"dead-letter-exchange":"`+dlx+`"}`); err != nil {
		t.Fatalf("rabbitmqctl set_policy: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = rabbitmqctl("clear_policy", "-p", env.vhost, policy) })

	conn := amqpConn(t)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(dlx, "fanout", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(dlq, false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(dlq, "", dlx, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}

	w := startWorker(t, workerOptions{Queues: []string{q}, Concurrency: 2})

	cases := malformedCases()
	ids := map[string]string{}
	publish := func(c malformedCase, id string) {
		t.Helper()
		h := validHeaders(id)
		if c.headers != nil {
			c.headers(h)
		}
		h["x-integration-case"] = c.name
		ct, enc := c.contentType, c.encoding
		if ct == "" {
			ct = "application/json"
		}
		if enc == "" {
			enc = "utf-8"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", q, false, false, amqp.Publishing{
			Headers: h, ContentType: ct, ContentEncoding: enc, Body: c.body,
			DeliveryMode: amqp.Persistent, CorrelationId: id, ReplyTo: "integration-" + testenv.Suffix(),
		})
		if err != nil {
			t.Fatalf("publish %s: %v", c.name, err)
		}
		if ok, err := conf.WaitContext(ctx); err != nil || !ok {
			t.Fatalf("publish %s: not confirmed (%v)", c.name, err)
		}
	}
	for _, c := range cases {
		id := "malformed-" + c.name + "-" + testenv.Suffix()
		ids[c.name] = id
		trackTasks(t, id)
		publish(c, id)
	}
	// A valid task after all of them still runs.
	okID := "valid-" + testenv.Suffix()
	trackTasks(t, okID)
	publish(malformedCase{name: "valid", body: []byte(`[[1, 2], {}, ` + embed + `]`)}, okID)
	m := waitMeta(t, okID, defaultWait, "SUCCESS")
	if string(m.Result) != "3" {
		t.Errorf("valid add(1, 2) after the bad messages: %s, want 3", m.Result)
	}

	// Every bad message is dead-lettered, i.e. rejected without requeue.
	if !eventually(defaultWait, func() bool { return queueReady(t, conn, dlq) >= len(cases) }) {
		t.Errorf("dead-letter queue holds %d messages, want %d", queueReady(t, conn, dlq), len(cases))
	}
	dead := map[string]int{}
	for {
		d, ok, err := ch.Get(dlq, true)
		if err != nil {
			t.Fatalf("get from the dead-letter queue: %v", err)
		}
		if !ok {
			break
		}
		name, _ := d.Headers["x-integration-case"].(string)
		dead[name]++
		if !bytes.Equal(d.Body, bodyOf(cases, name)) {
			t.Errorf("%s: dead-lettered body differs from the published one", name)
		}
	}
	for _, c := range cases {
		if dead[c.name] != 1 {
			t.Errorf("%s: dead-lettered %d times, want once (rejected without requeue)", c.name, dead[c.name])
		}
	}
	if ready, unacked := queueCounts(t, q); ready != 0 || unacked != 0 {
		t.Errorf("task queue: %d ready, %d unacked; want it empty", ready, unacked)
	}

	// FAILURE is stored for every message whose id is readable, so Python
	// callers do not wait forever.
	for _, c := range cases {
		id := ids[c.name]
		if !c.hasID {
			if m := getMeta(t, id); m != nil {
				t.Errorf("%s: stored %s for a message without a readable id", c.name, m.Status)
			}
			continue
		}
		m := getMeta(t, id)
		if m == nil {
			t.Errorf("%s: no result stored; want FAILURE", c.name)
			continue
		}
		var exc excDict
		if err := json.Unmarshal(m.Result, &exc); m.Status != "FAILURE" || err != nil || exc.Type == "" {
			t.Errorf("%s: stored %s %s; want FAILURE with an exception", c.name, m.Status, m.Result)
		}
	}

	w.requireAlive()
	log := w.log()
	for _, bad := range []string{"panic", "goroutine ", "fatal error"} {
		if strings.Contains(log, bad) {
			t.Errorf("worker log contains %q", bad)
		}
	}
	if n := strings.Count(log, "Received invalid task message"); n != len(cases) {
		t.Errorf("worker logged %d invalid-message errors for %d bad messages, want one each", n, len(cases))
	}
	for _, c := range cases {
		if c.hasID && !strings.Contains(log, ids[c.name]) {
			t.Errorf("%s: the error line does not name the task id %s", c.name, ids[c.name])
		}
	}
	// A deep body must not be logged whole.
	for _, line := range strings.Split(log, "\n") {
		if len(line) > 8192 {
			t.Errorf("worker logged a line of %d bytes: %.200s...", len(line), line)
		}
	}
	if err := w.stop(defaultWait); err != nil {
		t.Errorf("warm shutdown: %v", err)
	}
}

func bodyOf(cases []malformedCase, name string) []byte {
	for _, c := range cases {
		if c.name == name {
			return c.body
		}
	}
	return nil
}

// TestBigHeaderValues sends, from Python, a task whose headers hold
// integers beyond 32 bits: py-amqp encodes them with the 'L' field type,
// which amqp091-go cannot read unpatched. The worker must run the task and
// stay up.
func TestBigHeaderValues(t *testing.T) {
	t.Parallel()
	q := uniqueQueue(t, "bigheaders")
	w := startWorker(t, workerOptions{Queues: []string{q}, Concurrency: 1})
	r := pyClient{Conf: map[string]any{"task_default_queue": q}}.run(t, `
emit(big=call('tasks.add', (1, 2), headers={'big': 2**40, 'neg': -2**40, 'nested': {'x': 2**33}}))
emit(after=call('tasks.add', (2, 3)))
`)
	wantValue(t, "add with 64-bit header values", r.outcome(t, "big"), "3", "int")
	wantValue(t, "add after it", r.outcome(t, "after"), "5", "int")
	w.requireAlive()
}

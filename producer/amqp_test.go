package producer_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"reflect"
	"testing"
	"time"

	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/producer"
)

// pyGet reads one message from the queue argv[2] with py-amqp, the client
// Celery uses, and prints what Python sees.
const pyGet = `
import sys, json, amqp
from urllib.parse import urlparse, unquote
u = urlparse(sys.argv[1])
vhost = unquote(u.path[1:]) or '/'
conn = amqp.Connection(host='%s:%d' % (u.hostname, u.port or 5672), userid=unquote(u.username or 'guest'),
                       password=unquote(u.password or 'guest'), virtual_host=vhost)
conn.connect()
ch = conn.channel()
m = ch.basic_get(queue=sys.argv[2], no_ack=True)
props = {k: m.properties.get(k) for k in ('content_type', 'content_encoding', 'delivery_mode', 'correlation_id', 'reply_to', 'expiration')}
out = {'headers': m.headers, 'props': props, 'body': json.loads(m.body),
       'types': {k: type(v).__name__ for k, v in m.headers.items()}}
print(json.dumps(out))
conn.close()
`

// TestPythonReadsSentTask publishes through RabbitMQ and reads the
// message back with py-amqp: Python must see Celery's types and values.
func TestPythonReadsSentTask(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := amqptransport.Dial(ctx, amqptransport.Config{URL: testenv.AMQPURL()})
	if err != nil {
		t.Fatalf("RabbitMQ is required at %s (set AMQP_URL): %v", amqptransport.RedactURL(testenv.AMQPURL()), err)
	}
	defer b.Close()
	queue := "gworker.producer.test." + testenv.Suffix()
	t.Cleanup(func() { testenv.DeleteTaskQueue(t, queue) })

	p := producer.New(b, producer.Options{ReplyTo: "client-oid"})
	res, err := p.SendTask(ctx, "tasks.add", []any{2, 2}, nil, producer.Queue(queue),
		producer.Headers(map[string]any{"x-big": int64(1) << 40, "x-list": []any{1, "a"}}),
		producer.TimeLimit(10*time.Second), producer.ExpiresIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, testenv.Python(), "-c", pyGet, testenv.AMQPURL(), queue).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	var got struct {
		Headers map[string]any    `json:"headers"`
		Props   map[string]any    `json:"props"`
		Body    []any             `json:"body"`
		Types   map[string]string `json:"types"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	h := got.Headers
	if h["id"] != res.ID() || h["root_id"] != res.ID() || h["task"] != "tasks.add" || h["lang"] != "py" {
		t.Errorf("headers %v", h)
	}
	wantTypes := map[string]string{"retries": "int", "x-big": "int", "timelimit": "list", "ignore_result": "bool",
		"group_index": "NoneType", "eta": "NoneType", "expires": "str", "argsrepr": "str", "x-list": "list"}
	for k, want := range wantTypes {
		if got.Types[k] != want {
			t.Errorf("Python sees header %s as %s, want %s", k, got.Types[k], want)
		}
	}
	if h["x-big"] != float64(1<<40) || !reflect.DeepEqual(h["timelimit"], []any{float64(10), nil}) {
		t.Errorf("x-big %v timelimit %v", h["x-big"], h["timelimit"])
	}
	if got.Props["correlation_id"] != res.ID() || got.Props["reply_to"] != "client-oid" ||
		got.Props["delivery_mode"] != float64(2) || got.Props["expiration"] != "3600000" {
		t.Errorf("properties %v", got.Props)
	}
	wantBody := []any{[]any{float64(2), float64(2)}, map[string]any{},
		map[string]any{"callbacks": nil, "errbacks": nil, "chain": nil, "chord": nil}}
	if !reflect.DeepEqual(got.Body, wantBody) {
		t.Errorf("body %v", got.Body)
	}
}

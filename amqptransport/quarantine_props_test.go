package amqptransport

import (
	"context"
	"os/exec"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gworker/gworker/internal/testing/testenv"
)

// The copy the quarantine sweep republishes keeps every property of the
// original (message-id, timestamp, type, user-id, app-id, ...) and the
// field type of every header; only 'L' becomes a type amqp091-go reads.
func TestQuarantineCopyKeepsPropertiesAndTypes(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := f.b.Declare(ctx, q); err != nil {
		t.Fatal(err)
	}
	script := `
import sys, amqp, datetime, decimal
c = amqp.Connection('127.0.0.1:5672', userid='guest', password='guest')
c.connect()
ch = c.channel()
ch.confirm_select()
headers = {'task': 'tasks.add', 'id': 'props-1', 'big': 2**40, 'neg': -2**40, 'small': 7,
           'dec': decimal.Decimal('1.25'), 'when': datetime.datetime(2030, 1, 2, 3, 4, 5),
           'ratio': 0.5, 'flag': True, 'nested': {'l': [2**35, 'x']}}
msg = amqp.Message(body='[[], {}, {}]', content_type='application/json', content_encoding='utf-8',
                   application_headers=headers, delivery_mode=2, priority=3, correlation_id='props-1',
                   reply_to='rq', expiration='600000', message_id='mid-1', timestamp=1700000000,
                   type='celery-task', user_id='guest', app_id='app-x')
ch.basic_publish(msg, exchange='', routing_key=sys.argv[1])
c.close()
`
	if out, err := exec.Command(testenv.Python(), "-c", script, q.Name).CombinedOutput(); err != nil {
		t.Fatalf("py-amqp publish: %v\n%s", err, out)
	}
	eventually(t, 10*time.Second, "published", func() bool { return f.ready(q.Name) == 1 })
	rep, err := f.b.QuarantineSweep(ctx, q.Name)
	if err != nil || rep.Republished != 1 {
		t.Fatalf("sweep: %+v %v", rep, err)
	}
	ch, err := f.adm.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	var d amqp.Delivery
	eventually(t, 10*time.Second, "the copy", func() bool {
		var ok bool
		d, ok, err = ch.Get(q.Name, true)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		return ok
	})
	if d.MessageId != "mid-1" || d.Type != "celery-task" || d.UserId != "guest" || d.AppId != "app-x" ||
		!d.Timestamp.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("properties lost: message-id %q type %q user-id %q app-id %q timestamp %v",
			d.MessageId, d.Type, d.UserId, d.AppId, d.Timestamp)
	}
	if d.Priority != 3 || d.CorrelationId != "props-1" || d.ReplyTo != "rq" || d.Expiration != "600000" ||
		d.DeliveryMode != 2 || d.ContentType != "application/json" || d.ContentEncoding != "utf-8" ||
		string(d.Body) != "[[], {}, {}]" {
		t.Errorf("properties changed: %+v", d)
	}
	h := d.Headers
	if h["big"] != int64(1)<<40 {
		t.Errorf("big = %#v, want int64", h["big"])
	}
	if h["neg"] != float64(-(int64(1) << 40)) {
		t.Errorf("neg = %#v, want float64 (py-amqp reads 'l' as unsigned)", h["neg"])
	}
	if h["small"] != int32(7) {
		t.Errorf("small = %#v, want int32 ('I', as written)", h["small"])
	}
	if dec, ok := h["dec"].(amqp.Decimal); !ok || dec.Scale != 2 || dec.Value != 125 {
		t.Errorf("dec = %#v, want the decimal 1.25", h["dec"])
	}
	if ts, ok := h["when"].(time.Time); !ok || !ts.Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("when = %#v, want a timestamp", h["when"])
	}
	if h["ratio"] != 0.5 || h["flag"] != true || h["task"] != "tasks.add" {
		t.Errorf("headers: %#v", h)
	}
	nested, _ := h["nested"].(amqp.Table)
	if l, _ := nested["l"].([]any); len(l) != 2 || l[0] != int64(1)<<35 || l[1] != "x" {
		t.Errorf("nested = %#v", h["nested"])
	}
}

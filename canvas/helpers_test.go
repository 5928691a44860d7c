package canvas_test

import (
	"context"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
)

// event is one thing the code under test did, in order.
type event struct {
	kind                 string // "publish" or "chord-size"
	exchange, routingKey string
	msg                  *protocol.RawMessage
	group                string
	size                 int
}

// recorder captures what a producer hands to its transport.
type recorder struct {
	mu     sync.Mutex
	events []event
}

func (r *recorder) Publish(_ context.Context, exchange, routingKey string, msg *protocol.RawMessage) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{kind: "publish", exchange: exchange, routingKey: routingKey, msg: msg})
	return nil
}

func (r *recorder) add(e event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) published() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event
	for _, e := range r.events {
		if e.kind == "publish" {
			out = append(out, e)
		}
	}
	return out
}

const (
	vecReplyTo = "d58800da-0242-36df-8e40-45e4795aab1b"
	vecOrigin  = "gen10655@vm"
)

// counterIDs returns Celery-capture style ids: prefix-0000-4000-8000-0000000000NN.
func counterIDs(prefix string) func() string {
	var mu sync.Mutex
	n := 0
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		n++
		return fmt.Sprintf("%s-0000-4000-8000-%012x", prefix, n)
	}
}

func newProducer(pub producer.Publisher, opts producer.Options) *producer.Producer {
	if opts.ReplyTo == "" {
		opts.ReplyTo = vecReplyTo
	}
	if opts.Origin == "" {
		opts.Origin = vecOrigin
	}
	if opts.Now == nil {
		now := time.Date(2026, 11, 24, 3, 20, 0, 0, time.UTC)
		opts.Now = func() time.Time { return now }
	}
	return producer.New(pub, opts)
}

// wire is a published message in comparable form.
type wire struct {
	Route   [2]string
	Props   map[string]any
	Headers any
	Body    any
}

func wireOf(t *testing.T, e event) wire {
	t.Helper()
	m := e.msg
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
	return wire{
		Route:   [2]string{e.exchange, e.routingKey},
		Props:   props,
		Headers: testenv.Normalize(t, m.Headers),
		Body:    testenv.PyValue(t, m.Body),
	}
}

func wireOfVector(t *testing.T, v testenv.Vector) wire {
	t.Helper()
	return wire{
		Route:   [2]string{v.DeliveryInfo.Exchange, v.DeliveryInfo.RoutingKey},
		Props:   v.Properties,
		Headers: testenv.PyValue(t, v.HeadersJSON),
		Body:    testenv.PyValue(t, v.BodyJSON),
	}
}

var uuidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// canonicalIDs renames every UUID-shaped string to ID<n>, numbered by
// first appearance in a traversal with sorted keys, so that two messages
// that differ only in how their ids were drawn compare equal.
func canonicalIDs(v any) any {
	names := map[string]string{}
	var walk func(any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case string:
			if !uuidRe.MatchString(x) {
				return x
			}
			if n, ok := names[x]; ok {
				return n
			}
			names[x] = fmt.Sprintf("ID%d", len(names))
			return names[x]
		case []any:
			out := make([]any, len(x))
			for i, e := range x {
				out[i] = walk(e)
			}
			return out
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			out := make(map[string]any, len(x))
			for _, k := range keys {
				out[k] = walk(x[k])
			}
			return out
		}
		return v
	}
	return walk(v)
}

func equalWire(t *testing.T, name string, got, want wire) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %#v\nwant %#v", name, got, want)
	}
}

// sig builds a wire signature.
func sig(task string, args ...any) protocol.Signature {
	for i, a := range args {
		if n, ok := a.(int); ok {
			args[i] = int64(n)
		}
	}
	if args == nil {
		args = []any{}
	}
	return protocol.Signature{Task: task, Args: args, Kwargs: map[string]any{}, Options: map[string]any{}}
}

package control_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/gworker/gworker/control"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/protocol"
)

// stampHeaders are the headers of a task stamped as a Celery 5.5
// producer stamps it.
func stampHeaders(stamps map[string]any, names ...any) producer.Option {
	return producer.Headers(map[string]any{"stamped_headers": names, "stamps": stamps})
}

// The replies are those a Celery 5.5.3 worker gives to the same
// arguments, errors included.
func TestRevokeByStampedHeadersRepliesAsCelery(t *testing.T) {
	f := newFixture(t, newMemTransport(), "go@stamps")
	for _, c := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"headers": []any{"k=v"}, "terminate": false, "signal": nil},
			`ok:headers {'k': 'v'} flagged as revoked, but not terminated`},
		{map[string]any{"headers": []any{"k=v", "j=a=b", "k=w"}, "terminate": false, "signal": nil},
			`ok:headers {'k': 'w', 'j': 'a'} flagged as revoked, but not terminated`},
		{map[string]any{"headers": protocol.Dict{{Key: "z", Value: []any{"a", "b"}}, {Key: "a", Value: "x"}}, "terminate": false, "signal": "TERM"},
			`ok:headers {'z': ['a', 'b'], 'a': 'x'} flagged as revoked, but not terminated`},
		{map[string]any{"headers": []any{}, "terminate": false, "signal": nil},
			`ok:headers {} flagged as revoked, but not terminated`},
		{map[string]any{"headers": []any{"k=v"}, "terminate": true, "signal": "TERM"},
			`ok:headers {'k': 'v'} were not terminated`},
		{map[string]any{"headers": []any{"novalue"}, "terminate": false, "signal": nil},
			`error:IndexError('list index out of range')`},
		{map[string]any{"headers": []any{int64(1)}, "terminate": false, "signal": nil},
			`error:AttributeError("'int' object has no attribute 'split'")`},
		{map[string]any{"headers": map[string]any{"z": nil}, "terminate": false, "signal": "TERM"},
			`error:TypeError("'NoneType' object is not iterable")`},
		{map[string]any{"headers": nil, "terminate": false, "signal": "TERM"},
			`error:AttributeError("'NoneType' object has no attribute 'items'")`},
		{map[string]any{"headers": []any{"k=v"}, "terminate": false, "signal": "bogus"},
			`error:TypeError('signal name must be uppercase string.')`},
	} {
		v, _ := f.call("revoke_by_stamped_headers", c.args).(map[string]any)
		got := ""
		for k, s := range v {
			got = k + ":" + s.(string)
		}
		if len(v) != 1 || got != c.want {
			t.Errorf("%v: reply %v, want %s", c.args, v, c.want)
		}
	}
	want := map[string][]any{"k": {"v", "w"}, "j": {"a"}, "z": {"a", "b"}, "a": {"x"}}
	if got := f.env.Worker().RevokedStamps(); !reflect.DeepEqual(got, want) {
		t.Errorf("revoked stamps %v, want %v", got, want)
	}
}

func TestRevokeByStampedHeadersTerminatesAndRevokesOnArrival(t *testing.T) {
	f := newFixture(t, newMemTransport(), "go@stamps2")
	ctx := context.Background()
	run, err := f.env.SendTask(ctx, "tasks.block", nil, nil,
		stampHeaders(map[string]any{"mt": []any{"s1", "s2"}, "o": "x"}, "mt", "o"))
	if err != nil {
		t.Fatal(err)
	}
	<-f.block
	v := f.call("revoke_by_stamped_headers", map[string]any{
		"headers": protocol.Dict{{Key: "o", Value: "x"}, {Key: "mt", Value: []any{"s2", "s9"}}}, "terminate": true, "signal": "TERM"})
	if want := map[string]any{"ok": "headers defaultdict(<class 'set'>, {'o': {'x'}, 'mt': {'s2'}}) revoked"}; !reflect.DeepEqual(v, want) {
		t.Fatalf("reply %v, want %v", v, want)
	}
	m, err := f.env.Wait(ctx, run.ID())
	if err != nil || m.Status != "REVOKED" {
		t.Fatalf("terminated task: %v %v", m, err)
	}
	// Received later, held for its countdown or not: revoked on arrival.
	for _, opt := range []producer.Option{producer.Countdown(time.Hour), producer.Priority(0)} {
		res, err := f.env.SendTask(ctx, "tasks.add", []any{1, 2}, nil, opt, stampHeaders(map[string]any{"mt": "s9"}, "mt"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := f.env.Wait(ctx, res.ID())
		if err != nil || m.Status != "REVOKED" {
			t.Fatalf("stamped task received later: %v %v", m, err)
		}
	}
	res, err := f.env.SendTask(ctx, "tasks.add", []any{1, 2}, nil, stampHeaders(map[string]any{"mt": "s3"}, "mt"))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := f.env.Wait(ctx, res.ID()); err != nil || m.Status != "SUCCESS" {
		t.Fatalf("task with another stamp: %v %v", m, err)
	}
}

func TestRevokeByStampedHeadersOnTheCommandLine(t *testing.T) {
	got, err := control.ParseArgs("revoke_by_stamped_headers", []string{"k=v", "j=w"})
	if want := map[string]any{"headers": []any{"k=v", "j=w"}}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseArgs: %v %v, want %v", got, err, want)
	}
	if m := control.Methods("control"); len(m) < 3 || m[1] != "revoke_by_stamped_headers" {
		t.Errorf("control methods %v: revoke_by_stamped_headers follows revoke, as in Celery 5.5", m)
	}
}

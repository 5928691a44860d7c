package control_test

import (
	"reflect"
	"strings"
	"testing"
)

// Arguments anyone on the broker can send: pool_grow and pool_shrink take
// a whole n from 1 to MaxPoolResize (n = 1e9 grew a node to 5 GB, and a
// negative pool_shrink grew it), revoke takes only ids the result store
// could name, and terminate only signals Celery knows, with Celery's
// errors.
func TestHostileControlArguments(t *testing.T) {
	f := newFixture(t, newMemTransport(), "go@hostile")
	before := f.env.Worker().Inspector().Concurrency()
	for _, c := range []struct {
		method string
		args   map[string]any
		want   string
	}{
		{"pool_grow", map[string]any{"n": 1e9}, "ValueError('n must be from 1 to 1000, not 1000000000')"},
		{"pool_grow", map[string]any{"n": -3}, "ValueError('n must be from 1 to 1000, not -3')"},
		{"pool_shrink", map[string]any{"n": -3}, "ValueError('n must be from 1 to 1000, not -3')"},
		{"pool_grow", map[string]any{"n": 2.5}, "ValueError('n must be a whole number, not 2.5')"},
		{"pool_grow", map[string]any{"n": "many"}, "ValueError(\"invalid literal for int() with base 10: 'many'\")"},
		{"revoke", map[string]any{"task_id": strings.Repeat("x", 20000)}, ""},
		{"revoke", map[string]any{"task_id": []any{"ok-id", "bad\nid"}}, ""},
		{"revoke", map[string]any{"task_id": "t1", "terminate": true, "signal": "SIGFOO"}, "AttributeError(\"module 'signal' has no attribute 'SIGFOO'\")"},
		{"revoke", map[string]any{"task_id": "t1", "terminate": true, "signal": "kill"}, "TypeError('signal name must be uppercase string.')"},
		{"terminate", map[string]any{"task_id": "t1", "signal": "BOGUS"}, "AttributeError(\"module 'signal' has no attribute 'SIGBOGUS'\")"},
	} {
		v, ok := f.call(c.method, c.args).(map[string]any)
		e, isErr := v["error"].(string)
		if !ok || !isErr || (c.want != "" && e != c.want) || (c.want == "" && !strings.HasPrefix(e, "ValueError(")) {
			t.Errorf("%s %.60v: reply %.200v, want error %s", c.method, c.args, v, c.want)
		}
	}
	if n := f.env.Worker().Inspector().Concurrency(); n != before {
		t.Errorf("concurrency %d after refused resizes, was %d", n, before)
	}
	if ids := f.env.Worker().RevokedSet().IDs(); len(ids) != 0 {
		t.Errorf("revoked set holds %d ids after refused revokes", len(ids))
	}
	// A short name with or without SIG, and a number, are accepted.
	for _, sig := range []any{"KILL", "SIGUSR1", int64(9)} {
		v := f.call("revoke", map[string]any{"task_id": "t2", "terminate": true, "signal": sig})
		if !reflect.DeepEqual(v, map[string]any{"ok": "terminate: tasks unknown"}) {
			t.Errorf("signal %v: %v", sig, v)
		}
	}
}

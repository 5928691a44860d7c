package gworker

import (
	"reflect"
	"testing"
)

func TestRemoteArgsAsCeleryCLI(t *testing.T) {
	for _, c := range []struct {
		method string
		pos    []string
		want   map[string]any
	}{
		{"ping", nil, map[string]any{}},
		{"revoke", []string{"a", "b"}, map[string]any{"task_id": []any{"a", "b"}}},
		{"terminate", []string{"SIGKILL", "a"}, map[string]any{"signal": "SIGKILL", "task_id": []any{"a"}}},
		{"rate_limit", []string{"tasks.add", "10/s"}, map[string]any{"task_name": "tasks.add", "rate_limit": "10/s"}},
		{"time_limit", []string{"tasks.add", "1.5", "3"}, map[string]any{"task_name": "tasks.add", "soft": 1.5, "hard": 3.0}},
		{"pool_grow", []string{"2"}, map[string]any{"n": int64(2)}},
		{"registered", []string{"rate_limit", "name"}, map[string]any{"taskinfoitems": []any{"rate_limit", "name"}}},
	} {
		got, err := remoteArgs(c.method, c.pos)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s %v: got %v, %v; want %v", c.method, c.pos, got, err, c.want)
		}
	}
	if _, err := remoteArgs("pool_grow", []string{"x"}); err == nil {
		t.Error("a non-integer n was accepted")
	}
	if _, err := remoteArgs("ping", []string{"extra"}); err == nil {
		t.Error("an extra argument was accepted")
	}
}

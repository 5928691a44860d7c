package control

import (
	"reflect"
	"testing"
)

func TestParseArgsAsCeleryCLI(t *testing.T) {
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
		{"active", []string{"yes"}, map[string]any{"safe": true}},
	} {
		got, err := ParseArgs(c.method, c.pos)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s %v: got %v, %v; want %v", c.method, c.pos, got, err, c.want)
		}
	}
	if _, err := ParseArgs("pool_grow", []string{"x"}); err == nil {
		t.Error("a non-integer n was accepted")
	}
	if _, err := ParseArgs("time_limit", []string{"tasks.add", "soon"}); err == nil {
		t.Error("a non-number soft limit was accepted")
	}
	if _, err := ParseArgs("ping", []string{"extra"}); err == nil {
		t.Error("an extra argument was accepted")
	}
}

// Every command that takes arguments on the command line is one a node
// answers.
func TestCommandParamsNameNodeCommands(t *testing.T) {
	n := &Node{}
	cmds := n.commands()
	for method := range commandParams {
		if _, ok := cmds[method]; !ok {
			t.Errorf("%s has command-line arguments but no node command", method)
		}
	}
	ps := CommandParams("rate_limit")
	ps[0].Name = "changed"
	if CommandParams("rate_limit")[0].Name != "task_name" {
		t.Error("CommandParams returned the table itself")
	}
	if ExpectsReply("shutdown") || !ExpectsReply("ping") {
		t.Error("ExpectsReply: shutdown is cast, ping waits for replies")
	}
}

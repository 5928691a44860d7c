package integration

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gworker/gworker/internal/testing/testenv"
)

// gworkerCall runs `gworker call` against the run's vhost and Redis and
// returns its trimmed stdout, stderr and exit code. Unless args give one,
// it passes a --task-id of its own and deletes that task's result after
// the test.
func gworkerCall(t testing.TB, backend string, args ...string) (string, string, int) {
	t.Helper()
	if backend == "" {
		backend = backendURL
	}
	full := append([]string{"call"}, args...)
	if !slices.Contains(args, "--task-id") {
		// A known id, so that the result is deleted after the test.
		id := testenv.UUID()
		trackTasks(t, id)
		full = append(full, "--task-id", id)
	}
	full = append(full, "--broker", env.brokerURL, "--result-backend", backend)
	stdout, stderr, code := runGworker(t, 60*time.Second, full...)
	return strings.TrimSpace(stdout), stderr, code
}

// TestGoProducerPythonWorker sends tasks with `gworker call` to a real
// Python Celery worker and reads the results back.
func TestGoProducerPythonWorker(t *testing.T) {
	t.Parallel()
	q := uniqueQueue(t, "gotopy")
	pw := startPyWorker(t, "", map[string]any{
		"accept_content":        []string{"json", "msgpack"},
		"result_accept_content": []string{"json", "msgpack"},
	}, q)

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"pymul", []string{"tasks.pymul", "--args", "[6, 7]"}, "42"},
		{"kwargs", []string{"tasks.pyadd", "--args", "[1]", "--kwargs", `{"y": 2}`}, "3"},
		{"float", []string{"tasks.pyadd", "--args", "[2.5, 1]"}, "3.5"},
		{"float-stays-float", []string{"tasks.pytype", "--args", "[1.0]"}, `"float"`},
		{"int-stays-int", []string{"tasks.pytype", "--args", "[1]"}, `"int"`},
		{"big-int", []string{"tasks.pyadd", "--args", "[1152921504606846976, 1]"}, "1152921504606846977"},
		{"huge-int", []string{"tasks.pymul", "--args", "[18446744073709551616, 2]"}, "36893488147419103232"},
		{"unicode", []string{"tasks.pyecho", "--args", `["h\u00e9llo \u2713"]`}, `"h\u00e9llo \u2713"`},
		{"nested", []string{"tasks.pysum", "--args", "[[1, 2, 3.5]]"}, "6.5"},
		{"null", []string{"tasks.pytype", "--args", "[null]"}, `"NoneType"`},
		{"msgpack", []string{"tasks.pymul", "--args", "[6, 7]", "--serializer", "msgpack"}, "42"},
		{"countdown", []string{"tasks.pymul", "--args", "[2, 21]", "--countdown", "1"}, "42"},
	} {
		stdout, stderr, code := gworkerCall(t, "", append(append([]string{}, c.args...),
			"--queue", q, "--wait", "--timeout", "20")...)
		if code != 0 || !sameJSON(stdout, c.want) {
			t.Errorf("%s: gworker call printed %q (exit %d), want %s\nstderr: %s", c.name, stdout, code, c.want, stderr)
		}
	}

	t.Run("Failure", func(t *testing.T) {
		stdout, stderr, code := gworkerCall(t, "", "tasks.pyfail", "--args", `["nope"]`, "--queue", q, "--wait", "--timeout", "20")
		if code == 0 {
			t.Errorf("a failing task: exit 0, stdout %q", stdout)
		}
		if !strings.Contains(stderr, "ValueError") || !strings.Contains(stderr, "nope") {
			t.Errorf("a failing task: stderr %q, want the ValueError and its message", stderr)
		}
	})

	t.Run("CallThenResult", func(t *testing.T) {
		id, stderr, code := gworkerCall(t, "", "tasks.pymul", "--args", "[3, 5]", "--queue", q)
		if code != 0 || id == "" {
			t.Fatalf("gworker call: exit %d, stdout %q, stderr %s", code, id, stderr)
		}
		trackTasks(t, id)
		var out string
		ok := eventually(defaultWait, func() bool {
			o, _, code := runGworker(t, 30*time.Second, "result", id, "--broker", env.brokerURL, "--result-backend", backendURL)
			out = strings.TrimSpace(o)
			return code == 0 && out == "15"
		})
		if !ok {
			t.Errorf("gworker result %s: %q, want 15", id, out)
		}
	})

	pw.requireAlive()
}

// sameJSON reports whether two JSON texts hold the same value (numbers
// compared by their text, so big integers stay exact).
func sameJSON(got, want string) bool {
	decode := func(s string) (any, bool) {
		d := json.NewDecoder(strings.NewReader(s))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil || d.More() {
			return nil, false
		}
		return v, true
	}
	g, ok1 := decode(got)
	w, ok2 := decode(want)
	return ok1 && ok2 && reflect.DeepEqual(g, w)
}

// TestGroupInterop saves GroupResults on one side and restores them on the
// other.
func TestGroupInterop(t *testing.T) {
	t.Parallel()
	q := uniqueQueue(t, "groups")
	startWorker(t, workerOptions{Queues: []string{q}, Concurrency: 2})
	client := pyClient{Conf: map[string]any{"task_default_queue": q}}

	t.Run("GoSavedPythonRestores", func(t *testing.T) {
		r := client.run(t, `
parent = send('tasks.spawn_group', (5,))
emit(gid=parent.get(timeout=TIMEOUT))
# The task's stored children name the group it sent.
kids = parent.children or []
emit(children=[[type(c).__name__, c.id, len(getattr(c, 'results', None) or [])] for c in kids])
`)
		var gid string
		r.get(t, "gid", &gid)
		var kids [][]any
		r.get(t, "children", &kids)
		if len(kids) != 1 || kids[0][0] != "GroupResult" || kids[0][1] != gid || kids[0][2] != float64(5) {
			t.Errorf("children of spawn_group as Python reads them: %v, want one GroupResult %s of 5", kids, gid)
		}
		trackGroups(t, gid)
		r2 := client.run(t, fmt.Sprintf(`
from celery.result import GroupResult
g = GroupResult.restore(%s, app=app)
emit(found=g is not None)
if g is not None:
    track(g)
    emit(n=len(g.results), get=describe(lambda: g.get(timeout=TIMEOUT)))
`, pyString(gid)))
		var found bool
		if r2.get(t, "found", &found); !found {
			t.Fatalf("Python could not restore the group %s saved by Go", gid)
		}
		wantValue(t, "restored Go group", r2.outcome(t, "get"), "[0, 2, 4, 6, 8]", "list")
	})

	t.Run("PythonSavedGoReads", func(t *testing.T) {
		r := client.run(t, `
from celery import group
res = track(group(app.signature('tasks.add', (i, i)) for i in range(5)).apply_async())
res.save()
res.get(timeout=TIMEOUT)
emit(gid=res.id)
`)
		var gid string
		r.get(t, "gid", &gid)
		stdout, stderr, code := runGworker(t, 30*time.Second, "result", "--group", gid,
			"--broker", env.brokerURL, "--result-backend", backendURL)
		if code != 0 || !sameJSON(stdout, "[0, 2, 4, 6, 8]") {
			t.Errorf("gworker result --group %s: %q (exit %d), want [0, 2, 4, 6, 8]\nstderr: %s", gid, stdout, code, stderr)
		}
	})
}

// TestSyncSubtasks checks the deadlock guard as Python sees it.
func TestSyncSubtasks(t *testing.T) {
	t.Parallel()
	q := uniqueQueue(t, "syncget")
	startWorker(t, workerOptions{Queues: []string{q}, Concurrency: 2})
	r := pyClient{Conf: map[string]any{"task_default_queue": q}}.run(t, `
inner = send('tasks.add', (20, 22))
inner.get(timeout=TIMEOUT)
res = send('tasks.sync_get', (inner.id,))
try:
    res.get(timeout=TIMEOUT)
    emit(guarded={"ok": True})
except BaseException as e:
    d = exc_info(e)
    d["is_runtime_error"] = isinstance(e, RuntimeError)
    emit(guarded=d)
emit(allowed=call('tasks.sync_get', (inner.id,), {'disable_sync_subtasks': False}))
`)
	var guarded struct {
		outcome
		IsRuntimeError bool `json:"is_runtime_error"`
	}
	r.get(t, "guarded", &guarded)
	if guarded.OK || !guarded.IsRuntimeError || !strings.Contains(guarded.Str, "Never call result.get() within a task!") {
		t.Errorf("sync_get with the guard: %s, want RuntimeError(\"Never call result.get() within a task!...\")", guarded.outcome)
	}
	wantValue(t, "sync_get(disable_sync_subtasks=False)", r.outcome(t, "allowed"), "42", "int")
}

// TestRPCBackend uses the rpc:// result backend in both directions.
func TestRPCBackend(t *testing.T) {
	t.Parallel()
	t.Run("PythonClientGoWorker", func(t *testing.T) {
		t.Parallel()
		q := uniqueQueue(t, "rpc-go")
		startWorker(t, workerOptions{Queues: []string{q}, Concurrency: 2, Backend: "rpc://"})
		r := pyClient{Backend: "rpc://", Conf: map[string]any{"task_default_queue": q}}.run(t, `
emit(add=call('tasks.add', (2, 2)))
emit(fail=call('tasks.raise_error'))
emit(float=call('tasks.add', (2.0, 2)))
rs = [send('tasks.mul', (i, 2)) for i in range(5)]
emit(many=describe(lambda: [r.get(timeout=TIMEOUT) for r in rs]))
`)
		wantValue(t, "rpc add(2, 2)", r.outcome(t, "add"), "4", "int")
		wantExc(t, "rpc raise_error", r.outcome(t, "fail"), "KeyError")
		wantValue(t, "rpc add(2.0, 2)", r.outcome(t, "float"), "4.0", "float")
		wantValue(t, "rpc mul(i, 2)", r.outcome(t, "many"), "[0, 2, 4, 6, 8]", "list")
	})
	t.Run("GoClientPythonWorker", func(t *testing.T) {
		t.Parallel()
		q := uniqueQueue(t, "rpc-py")
		startPyWorker(t, "rpc://", nil, q)
		stdout, stderr, code := gworkerCall(t, "rpc://", "tasks.pymul", "--args", "[6, 7]", "--queue", q, "--wait", "--timeout", "20")
		if code != 0 || stdout != "42" {
			t.Errorf("gworker call over rpc://: %q (exit %d), want 42\nstderr: %s", stdout, code, stderr)
		}
		stdout, stderr, code = gworkerCall(t, "rpc://", "tasks.pyfail", "--args", `["rpc-fail"]`, "--queue", q, "--wait", "--timeout", "20")
		if code == 0 || !strings.Contains(stderr, "ValueError") {
			t.Errorf("failing call over rpc://: %q (exit %d), want a ValueError\nstderr: %s", stdout, code, stderr)
		}
	})
}

// TestGoProducerGoWorker sends tasks with `gworker call` to gworker
// workers, with each serializer, and checks that a worker refuses content
// types it was not told to accept.
func TestGoProducerGoWorker(t *testing.T) {
	t.Parallel()
	q := uniqueQueue(t, "gotogo")
	jsonOnly := uniqueQueue(t, "gotogo-json")
	startWorker(t, workerOptions{Queues: []string{q}, Concurrency: 2, Extra: []string{"--accept-content", "json,msgpack"}})
	w := startWorker(t, workerOptions{Queues: []string{jsonOnly}, Concurrency: 1})

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"add", []string{"tasks.add", "--args", "[2, 2]"}, "4"},
		{"float", []string{"tasks.add", "--args", "[2.0, 2]"}, "4.0"},
		{"kwargs", []string{"tasks.add", "--args", "[2]", "--kwargs", `{"y": 40}`}, "42"},
		{"big", []string{"tasks.echo", "--args", "[123456789012345678901234567890]"}, "123456789012345678901234567890"},
		{"msgpack", []string{"tasks.mul", "--args", "[6, 7]", "--serializer", "msgpack"}, "42"},
		{"msgpack-float", []string{"tasks.xsum", "--args", "[[1, 2.5]]", "--serializer", "msgpack"}, "3.5"},
	} {
		stdout, stderr, code := gworkerCall(t, "", append(append([]string{}, c.args...),
			"--queue", q, "--wait", "--timeout", "20")...)
		if code != 0 || stdout != c.want {
			t.Errorf("%s: gworker call printed %q (exit %d), want %s\nstderr: %s", c.name, stdout, code, c.want, stderr)
		}
	}

	stdout, stderr, code := gworkerCall(t, "", "tasks.add", "--args", "[1, 1]", "--serializer", "msgpack",
		"--queue", jsonOnly, "--wait", "--timeout", "20")
	if code == 0 {
		t.Errorf("msgpack to a json-only worker: exit 0, stdout %q", stdout)
	}
	if !strings.Contains(stderr, "ContentDisallowed") {
		t.Errorf("msgpack to a json-only worker: stderr %q, want a ContentDisallowed failure", stderr)
	}
	w.requireAlive()
}

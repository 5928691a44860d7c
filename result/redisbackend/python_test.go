package redisbackend_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
)

// These tests run real Celery 5.2.6 against the same Redis, with the
// interpreter testenv.Python names.

// pyPrelude builds a Celery app on the test Redis (the broker is unused).
var pyPrelude = `
import json, sys
from celery import Celery
from celery.result import GroupResult, AsyncResult
app = Celery('interop', backend=` + testenv.PyQuote(testenv.RedisURL()) + `, broker='memory://')
args = sys.argv[1:]
`

// startPython starts script with args and returns its stdout; the test
// fails if Python or Celery is missing.
func startPython(t *testing.T, ctx context.Context, script string, args ...string) (*exec.Cmd, io.Reader) {
	t.Helper()
	cmd := exec.CommandContext(ctx, testenv.Python(), append([]string{"-c", pyPrelude + script}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("Celery (%s) is required for this test: %v", testenv.Python(), err)
	}
	t.Cleanup(func() {
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("python stderr:\n%s", stderr.String())
		}
	})
	return cmd, out
}

// runPython runs script with args and returns its stdout.
func runPython(t *testing.T, ctx context.Context, script string, args ...string) string {
	t.Helper()
	cmd, out := startPython(t, ctx, script, args...)
	b, _ := io.ReadAll(out)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("python: %v\nstdout: %s", err, b)
	}
	return string(b)
}

// waitSubscribed waits until someone listens on channel.
func waitSubscribed(t *testing.T, ctx context.Context, bd *bundle, channel string) {
	t.Helper()
	for bd.client.PubSubNumSub(ctx, channel).Val()[channel] == 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("nobody subscribed to %s", channel)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Go stores the result while Python waits in AsyncResult.get(), which
// listens on pub/sub only: the value arrives through our PUBLISH. A Go
// FAILURE with a KeyError is raised in Python as KeyError.
func TestPythonGetsGoResults(t *testing.T) {
	bd := setup(t, redisbackend.Options{})
	ctx := testCtx(t)
	okID, badID := testenv.UUID(), testenv.UUID()
	bd.cleanup(t, "celery-task-meta-"+okID, "celery-task-meta-"+badID)

	cmd, out := startPython(t, ctx, `
for tid in args:
    try:
        v = app.AsyncResult(tid).get(timeout=10)
        print(json.dumps({"value": v}), flush=True)
    except Exception as e:
        print(json.dumps({"type": type(e).__name__, "module": type(e).__module__, "args": list(e.args)}), flush=True)
`, okID, badID)
	lines := bufio.NewScanner(out)

	// Python subscribes, then reads once; store only after both.
	waitSubscribed(t, ctx, bd, "celery-task-meta-"+okID)
	time.Sleep(200 * time.Millisecond)
	if err := bd.b.Store(ctx, success(okID, protocol.Dict{{Key: "sum", Value: int64(4)}, {Key: "f", Value: 1.0}})); err != nil {
		t.Fatal(err)
	}
	if !lines.Scan() {
		t.Fatal("no output from python")
	}
	if got := lines.Text(); got != `{"value": {"sum": 4, "f": 1.0}}` {
		t.Errorf("python got %s", got)
	}

	waitSubscribed(t, ctx, bd, "celery-task-meta-"+badID)
	time.Sleep(200 * time.Millisecond)
	if err := bd.b.Store(ctx, failure(badID, protocol.NewException("KeyError", "missing"))); err != nil {
		t.Fatal(err)
	}
	if !lines.Scan() {
		t.Fatal("no second line from python")
	}
	if got := lines.Text(); got != `{"type": "KeyError", "module": "builtins", "args": ["missing"]}` {
		t.Errorf("python raised %s", got)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

// Python stores results (as its worker does) while Go waits: Go's
// JoinNative gets them through pub/sub, and the seed example with
// propagate off gives [2, KeyError].
func TestGoGetsPythonResults(t *testing.T) {
	bd := setup(t, redisbackend.Options{})
	ctx := testCtx(t)
	a, c := testenv.UUID(), testenv.UUID()
	bd.cleanup(t, "celery-task-meta-"+a, "celery-task-meta-"+c)
	rs := result.NewResultSet(result.NewAsyncResult(a, bd.b), result.NewAsyncResult(c, bd.b))

	type joined struct {
		vals []any
		err  error
	}
	done := make(chan joined, 1)
	go func() {
		v, err := rs.Get(ctx, result.WithPropagate(false))
		done <- joined{v, err}
	}()
	waitSubscribed(t, ctx, bd, "celery-task-meta-"+c)
	runPython(t, ctx, `
app.backend.store_result(args[0], 2, 'SUCCESS')
try:
    raise KeyError('boom')
except KeyError as e:
    app.backend.mark_as_failure(args[1], e)
`, a, c)
	j := <-done
	if j.err != nil {
		t.Fatal(j.err)
	}
	if len(j.vals) != 2 || j.vals[0] != int64(2) {
		t.Fatalf("got %v", j.vals)
	}
	var exc *protocol.Exception
	if te, ok := j.vals[1].(*result.TaskError); !ok || !errors.As(te, &exc) || exc.Type != "KeyError" || !reflect.DeepEqual(exc.Args, []any{"boom"}) {
		t.Errorf("second value %#v", j.vals[1])
	}
	if n, _ := rs.CompletedCount(ctx); n != 1 {
		t.Errorf("CompletedCount %d", n)
	}
}

// A group Python saved, nested group and chain parent included, restores in
// Go; a group Go saved restores in Python with the same structure, and
// Python's join_native reads the values Go stored.
func TestGroupInterop(t *testing.T) {
	bd := setup(t, redisbackend.Options{})
	ctx := testCtx(t)
	gid, a, pa, g2, c, d := testenv.UUID(), testenv.UUID(), testenv.UUID(), testenv.UUID(), testenv.UUID(), testenv.UUID()
	bd.cleanup(t, "celery-taskset-meta-"+gid)

	runPython(t, ctx, `
gid, a, pa, g2, c, d = args
nested = app.GroupResult(g2, [app.AsyncResult(c), app.AsyncResult(d)])
app.GroupResult(gid, [app.AsyncResult(a, parent=app.AsyncResult(pa)), nested]).save()
`, gid, a, pa, g2, c, d)
	g, err := result.RestoreGroup(ctx, bd.b, gid)
	if err != nil {
		t.Fatal(err)
	}
	first, ok := g.Children()[0].(*result.AsyncResult)
	if !ok || first.ID() != a || first.Parent() == nil || first.Parent().ID() != pa {
		t.Fatalf("first child %#v", g.Children()[0])
	}
	nested, ok := g.Children()[1].(*result.GroupResult)
	if !ok || nested.ID() != g2 || !reflect.DeepEqual(ids(nested.Children()), []string{c, d}) {
		t.Fatalf("nested %#v", g.Children()[1])
	}

	// Go saves, Python restores and joins.
	gid2 := testenv.UUID()
	members := []result.Result{result.NewAsyncResult(testenv.UUID(), bd.b), result.NewAsyncResult(testenv.UUID(), bd.b), result.NewAsyncResult(testenv.UUID(), bd.b)}
	bd.cleanup(t, "celery-taskset-meta-"+gid2)
	for i, m := range members {
		bd.cleanup(t, "celery-task-meta-"+m.ID())
		if err := bd.b.Store(ctx, success(m.ID(), int64(1<<(i+1)))); err != nil {
			t.Fatal(err)
		}
	}
	inner := result.NewGroupResult(testenv.UUID(), bd.b, members[2])
	mine := result.NewGroupResult(gid2, bd.b, members[0], members[1], inner)
	members[1].(*result.AsyncResult).SetParent(members[0])
	if err := mine.Save(ctx); err != nil {
		t.Fatal(err)
	}
	out := runPython(t, ctx, `
g = GroupResult.restore(args[0], app=app)
def shape(r):
    if isinstance(r, GroupResult):
        return {"group": r.id, "children": [shape(x) for x in r.results]}
    return {"id": r.id, "parent": r.parent.id if r.parent else None}
flat = GroupResult(g.id, g.results[:2], app=app)
print(json.dumps({"shape": shape(g), "values": flat.get(timeout=10), "native": flat.supports_native_join}))
`, gid2)
	var got struct {
		Shape  map[string]any
		Values []int
		Native bool
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	wantShape := map[string]any{"group": gid2, "children": []any{
		map[string]any{"id": members[0].ID(), "parent": nil},
		map[string]any{"id": members[1].ID(), "parent": members[0].ID()},
		map[string]any{"group": inner.ID(), "children": []any{map[string]any{"id": members[2].ID(), "parent": nil}}},
	}}
	if !reflect.DeepEqual(got.Shape, wantShape) {
		t.Errorf("python restored %v\nwant %v", got.Shape, wantShape)
	}
	if !reflect.DeepEqual(got.Values, []int{2, 4}) || !got.Native {
		t.Errorf("python join: %v native=%v", got.Values, got.Native)
	}
}

// A chord size written by Go is what Python's worker reads, and a Go chord
// part has the member form Python's on_chord_part_return writes.
func TestChordInterop(t *testing.T) {
	bd := setup(t, redisbackend.Options{})
	ctx := testCtx(t)
	gid, tid := testenv.UUID(), testenv.UUID()
	base := "celery-taskset-meta-" + gid
	bd.cleanup(t, base+".j", base+".t", base+".s")
	out := runPython(t, ctx, `
from types import SimpleNamespace
gid, tid = args
app.backend.set_chord_size(gid, 2)
req = SimpleNamespace(id=tid, group=gid, group_index=0, chord=None)
app.backend.on_chord_part_return(req, 'SUCCESS', 7)
print(app.backend.client.zrange(app.backend.get_key_for_group(gid, '.j'), 0, -1)[0].decode())
`, gid, tid)
	want := `[1, "` + tid + `", "SUCCESS", 7]`
	if strings.TrimSpace(out) != want {
		t.Fatalf("python member %q", out)
	}
	if err := bd.b.SetChordSize(ctx, gid, 2); err != nil {
		t.Fatal(err)
	}
	done, parts, err := bd.b.AddChordPart(ctx, gid, intp(1), result.ChordPart{TaskID: testenv.UUID(), Status: result.Success, Result: int64(8)})
	if err != nil || !done || len(parts) != 2 || parts[0].TaskID != tid || parts[0].Result != int64(7) {
		t.Fatalf("completion after a python part: %v %+v %v", done, parts, err)
	}
}

func ids(rs []result.Result) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID()
	}
	return out
}

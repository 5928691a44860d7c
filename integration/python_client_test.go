package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestPythonClient sends tasks from Python Celery clients to one gworker
// worker and checks what the clients get back.
func TestPythonClient(t *testing.T) {
	q := uniqueQueue(t, "pyclient")
	w := startWorker(t, workerOptions{Queues: []string{q}, Concurrency: 4,
		Extra: []string{"--accept-content", "json,msgpack"}})
	base := map[string]any{"task_default_queue": q}
	client := func(extra map[string]any) pyClient {
		conf := map[string]any{}
		for k, v := range base {
			conf[k] = v
		}
		for k, v := range extra {
			conf[k] = v
		}
		return pyClient{Conf: conf}
	}

	t.Run("ProtocolV2JSON", func(t *testing.T) {
		t.Parallel()
		r := client(nil).run(t, valuesScript)
		checkValues(t, r)
	})

	t.Run("ProtocolV1JSON", func(t *testing.T) {
		t.Parallel()
		r := client(map[string]any{"task_protocol": 1}).run(t, valuesScript)
		checkValues(t, r)
	})

	t.Run("Msgpack", func(t *testing.T) {
		t.Parallel()
		r := client(map[string]any{
			"task_serializer":       "msgpack",
			"accept_content":        []string{"json", "msgpack"},
			"result_accept_content": []string{"json", "msgpack"},
		}).run(t, `
emit(add=call('tasks.add', (2, 2)))
emit(addf=call('tasks.add', (2.0, 2)))
emit(big=call('tasks.echo', (2**60 + 1,)))
emit(kwargs=call('tasks.add', args=(2,), kwargs={'y': 3}))
v = {"s": "h\u00e9llo \u2713", "n": [1, [2, None]], "t": True}
got = send('tasks.echo', (v,))
emit(nested=describe(lambda: got.get(timeout=TIMEOUT) == v))
emit(content_type=app.conf.task_serializer)
`)
		wantValue(t, "msgpack add(2, 2)", r.outcome(t, "add"), "4", "int")
		wantValue(t, "msgpack add(2.0, 2)", r.outcome(t, "addf"), "4.0", "float")
		wantValue(t, "msgpack echo(2**60+1)", r.outcome(t, "big"), "1152921504606846977", "int")
		wantValue(t, "msgpack add(2, y=3)", r.outcome(t, "kwargs"), "5", "int")
		wantValue(t, "msgpack echo(nested) == nested", r.outcome(t, "nested"), "True", "bool")
	})

	t.Run("Compression", func(t *testing.T) {
		t.Parallel()
		// Per call: compression='zlib' on apply_async.
		r := client(nil).run(t, `
emit(percall=call('tasks.add', (20, 22), compression='zlib'))
emit(zlib_xsum=call('tasks.xsum', ([1, 2, 3],), compression='zlib', serializer='json'))
`)
		wantValue(t, "add with compression='zlib'", r.outcome(t, "percall"), "42", "int")
		wantValue(t, "xsum with compression='zlib'", r.outcome(t, "zlib_xsum"), "6", "int")
		// result_compression compresses the task messages in Celery 5.2.6.
		r = client(map[string]any{"result_compression": "zlib"}).run(t, `
emit(setting=call('tasks.echo', ("x" * 5000,)))
emit(check=describe(lambda: send('tasks.add', (1, 1)).get(timeout=TIMEOUT)))
`)
		if o := r.outcome(t, "setting"); !o.OK || o.Repr != "'"+strings.Repeat("x", 5000)+"'" {
			t.Errorf("echo with result_compression='zlib': got %.200s", o.String())
		}
		wantValue(t, "add with result_compression='zlib'", r.outcome(t, "check"), "2", "int")
	})

	t.Run("Failures", func(t *testing.T) {
		t.Parallel()
		r := client(nil).run(t, `
def check(name, args=(), kwargs=None, cls=None):
    res = send(name, args, kwargs)
    try:
        v = res.get(timeout=TIMEOUT)
        return {"ok": True, "repr": repr(v)}
    except BaseException as e:
        d = exc_info(e)
        d["isinstance"] = cls is not None and isinstance(e, cls)
        d["state"] = res.state
        d["failed"] = res.failed()
        d["traceback"] = res.traceback
        return d
from celery.exceptions import NotRegistered
emit(boom=check('tasks.raise_error', cls=KeyError))
emit(custom=check('tasks.raise_error', kwargs={'message': 'custom message'}, cls=KeyError))
emit(positional=check('tasks.raise_error', ('positional',), cls=KeyError))
emit(arity=check('tasks.add', (1,), cls=TypeError))
emit(toomany=check('tasks.add', (1, 2, 3), cls=TypeError))
emit(badkw=check('tasks.add', (1,), {'z': 2}, cls=TypeError))
emit(types=check('tasks.add', ('a', 1), cls=TypeError))
emit(unknown=check('tasks.does_not_exist', (1, 2), cls=NotRegistered))
emit(after=call('tasks.add', (1, 1)))
`)
		type failure struct {
			outcome
			IsInstance bool    `json:"isinstance"`
			State      string  `json:"state"`
			Failed     bool    `json:"failed"`
			Traceback  *string `json:"traceback"`
		}
		get := func(key string) failure {
			var f failure
			r.get(t, key, &f)
			return f
		}
		for _, c := range []struct {
			key, exc, repr string
		}{
			{"boom", "KeyError", "KeyError('boom')"},
			{"custom", "KeyError", "KeyError('custom message')"},
			{"positional", "KeyError", "KeyError('positional')"},
			{"arity", "TypeError", ""},
			{"toomany", "TypeError", ""},
			{"badkw", "TypeError", ""},
			{"types", "TypeError", ""},
			{"unknown", "NotRegistered", ""},
		} {
			f := get(c.key)
			if f.OK || f.Exc != c.exc || !f.IsInstance {
				t.Errorf("%s: got %s (isinstance %v), want %s", c.key, f.outcome, f.IsInstance, c.exc)
				continue
			}
			if c.repr != "" && f.Repr != c.repr {
				t.Errorf("%s: got %s, want %s", c.key, f.Repr, c.repr)
			}
			if f.State != "FAILURE" || !f.Failed {
				t.Errorf("%s: state %s failed()=%v, want FAILURE", c.key, f.State, f.Failed)
			}
		}
		if f := get("unknown"); len(f.Args) != 1 || f.Args[0] != "'tasks.does_not_exist'" {
			t.Errorf("NotRegistered args: %q, want ['tasks.does_not_exist']", f.Args)
		}
		if f := get("boom"); f.Traceback == nil || *f.Traceback == "" {
			t.Errorf("raise_error: no traceback stored")
		}
		wantValue(t, "add(1, 1) after the failures", r.outcome(t, "after"), "2", "int")
		w.requireAlive()
		if n := w.countLog("Received unregistered task of type 'tasks.does_not_exist'"); n != 1 {
			t.Errorf("worker logged the unregistered task %d times, want 1", n)
		}
	})

	t.Run("ResultSet", func(t *testing.T) {
		t.Parallel()
		r := client(nil).run(t, `
from celery.result import ResultSet
rs = ResultSet([send('tasks.add', (1, 1)), send('tasks.add', (2, 2)), send('tasks.add', (4, 4))])
emit(get=describe(lambda: rs.get(timeout=TIMEOUT)))
emit(ready=rs.ready(), successful=rs.successful(), failed=rs.failed(),
     completed=rs.completed_count(), native=rs.supports_native_join)
emit(join=describe(lambda: rs.join(timeout=TIMEOUT)))

rs2 = ResultSet([send('tasks.add', (1, 1)), send('tasks.raise_error')])
vals = rs2.get(timeout=TIMEOUT, propagate=False)
emit(mixed=[repr(v) for v in vals], mixed_keyerror=isinstance(vals[1], KeyError),
     r0_successful=rs2.results[0].successful(), r1_failed=rs2.results[1].failed(),
     mixed_failed=rs2.failed(), mixed_successful=rs2.successful(),
     mixed_completed=rs2.completed_count(),
     mixed_finished=len([r for r in rs2.results if r.ready()]))
emit(mixed_propagate=describe(lambda: rs2.get(timeout=TIMEOUT)))

rs3 = ResultSet([])
a = send('tasks.add', (1, 1))
rs3.add(a)
rs3.update([send('tasks.add', (2, 2)), send('tasks.add', (3, 3))])
n_after_update = len(rs3.results)
rs3.remove(a)
# join(), not get(): Celery's native join keeps waiting on the barrier of a
# removed member, with any worker.
emit(n_after_update=n_after_update, after_remove=describe(lambda: rs3.join(timeout=TIMEOUT)))
rs3.discard(a)
rs3.clear()
emit(n_after_clear=len(rs3.results))
`)
		wantValue(t, "ResultSet.get", r.outcome(t, "get"), "[2, 4, 8]", "list")
		wantValue(t, "ResultSet.join", r.outcome(t, "join"), "[2, 4, 8]", "list")
		var flags struct {
			Ready, Successful, Failed bool
			Completed                 int
			Native                    bool
		}
		for k, p := range map[string]any{"ready": &flags.Ready, "successful": &flags.Successful,
			"failed": &flags.Failed, "completed": &flags.Completed, "native": &flags.Native} {
			r.get(t, k, p)
		}
		if !flags.Ready || !flags.Successful || flags.Failed || flags.Completed != 3 || !flags.Native {
			t.Errorf("ResultSet flags: %+v, want ready, successful, not failed, 3 completed, native join", flags)
		}
		var mixed []string
		r.get(t, "mixed", &mixed)
		if len(mixed) != 2 || mixed[0] != "2" || mixed[1] != "KeyError('boom')" {
			t.Errorf("get(propagate=False): %q, want [2, KeyError('boom')]", mixed)
		}
		var b bool
		for _, k := range []string{"mixed_keyerror", "r0_successful", "r1_failed", "mixed_failed"} {
			r.get(t, k, &b)
			if !b {
				t.Errorf("%s is false", k)
			}
		}
		r.get(t, "mixed_successful", &b)
		if b {
			t.Errorf("successful() is true for a set with a failure")
		}
		var n int
		if r.get(t, "mixed_completed", &n); n != 1 {
			t.Errorf("completed_count() = %d, want 1 (failures do not count)", n)
		}
		if r.get(t, "mixed_finished", &n); n != 2 {
			t.Errorf("finished = %d, want 2", n)
		}
		wantExc(t, "get() of a set with a failure", r.outcome(t, "mixed_propagate"), "KeyError")
		if r.get(t, "n_after_update", &n); n != 3 {
			t.Errorf("after add and update: %d results, want 3", n)
		}
		wantValue(t, "get after remove", r.outcome(t, "after_remove"), "[4, 6]", "list")
		if r.get(t, "n_after_clear", &n); n != 0 {
			t.Errorf("after clear: %d results, want 0", n)
		}
	})

	t.Run("GroupResultSaveRestore", func(t *testing.T) {
		t.Parallel()
		r := client(nil).run(t, `
from celery import group
job = group(app.signature('tasks.add', (i, i)) for i in range(5))
res = track(job.apply_async())
res.save()
emit(gid=res.id, children=[c.id for c in res.results])
`)
		var gid string
		var children []string
		r.get(t, "gid", &gid)
		r.get(t, "children", &children)
		// A new process restores the group by id only.
		r2 := client(nil).run(t, fmt.Sprintf(`
from celery.result import GroupResult
g = GroupResult.restore(%s, app=app)
emit(found=g is not None)
if g is not None:
    emit(children=[c.id for c in g.results])
    emit(get=describe(lambda: g.get(timeout=TIMEOUT)))
    emit(ready=g.ready(), successful=g.successful(), completed=g.completed_count())
    emit(join_native=describe(lambda: g.join_native(timeout=TIMEOUT)))
`, pyString(gid)))
		var found bool
		if r2.get(t, "found", &found); !found {
			t.Fatalf("GroupResult.restore(%s) returned None", gid)
		}
		var restored []string
		r2.get(t, "children", &restored)
		if strings.Join(restored, ",") != strings.Join(children, ",") {
			t.Errorf("restored children %v, want %v", restored, children)
		}
		wantValue(t, "restored GroupResult.get", r2.outcome(t, "get"), "[0, 2, 4, 6, 8]", "list")
		wantValue(t, "restored GroupResult.join_native", r2.outcome(t, "join_native"), "[0, 2, 4, 6, 8]", "list")
		var n int
		if r2.get(t, "completed", &n); n != 5 {
			t.Errorf("completed_count = %d, want 5", n)
		}
	})

	t.Run("IgnoreResult", func(t *testing.T) {
		t.Parallel()
		r := client(nil).run(t, `
ign = send('tasks.add', (5, 5), ignore_result=True)
ign_fail = send('tasks.raise_error', ignore_result=True)
emit(ignored=ign.id, ignored_failure=ign_fail.id, after=call('tasks.add', (3, 4)))
`)
		wantValue(t, "add after an ignore_result task", r.outcome(t, "after"), "7", "int")
		var id, failID string
		r.get(t, "ignored", &id)
		r.get(t, "ignored_failure", &failID)
		if !w.waitLog("Task tasks.add["+id+"] succeeded", defaultWait) {
			t.Fatalf("the ignore_result task %s did not run", id)
		}
		if m := getMeta(t, id); m != nil {
			t.Errorf("ignore_result task %s stored %s; want no result key", id, m.Status)
		}
		// As in Celery, ignore_result=True on the call skips SUCCESS only:
		// failures are still stored.
		m := waitMeta(t, failID, defaultWait, "FAILURE")
		var exc excDict
		if err := json.Unmarshal(m.Result, &exc); err != nil || exc.Type != "KeyError" {
			t.Errorf("ignored failure stored %s, want a KeyError", m.Result)
		}
	})

	t.Run("Signature", func(t *testing.T) {
		t.Parallel()
		r := client(nil).run(t, `
res = track(app.signature('tasks.add', (2, 2)).delay())
emit(delay=describe(lambda: res.get(timeout=TIMEOUT)))
res = track(app.signature('tasks.mul', (3,)).apply_async((5,)))
emit(partial=describe(lambda: res.get(timeout=TIMEOUT)))
res = track(app.signature('tasks.add').apply_async(kwargs={'x': 1, 'y': 2}, countdown=0.2))
emit(countdown=describe(lambda: res.get(timeout=TIMEOUT)))
`)
		wantValue(t, "signature delay", r.outcome(t, "delay"), "4", "int")
		wantValue(t, "partial signature", r.outcome(t, "partial"), "15", "int")
		wantValue(t, "signature with countdown", r.outcome(t, "countdown"), "3", "int")
	})

	// The worker survived everything above.
	t.Cleanup(func() {
		if w.alive() {
			if err := w.stop(defaultWait); err != nil {
				t.Errorf("warm shutdown of the shared worker: %v\n%s", err, w.log())
			}
		}
	})
}

// valuesScript sends values of every JSON-representable Python type and
// reports what came back.
const valuesScript = `
emit(add=call('tasks.add', (2, 2)))
emit(addf=call('tasks.add', (2.0, 2)))
emit(big=call('tasks.add', (2**60, 1)))
emit(bigecho=call('tasks.echo', (2**60 + 1,)))
emit(huge=call('tasks.echo', (2**70,)))
emit(neghuge=call('tasks.add', (-2**64, -1)))
v = {"s": "h\u00e9llo w\u00f6rld \u2713 \U0001d11e <&>", "n": [1, [2, [3, None]], {"k": True}],
     "none": None, "f": False, "big": 2**70, "neg": -2**65, "fl": 1.5, "zero": 0.0, "e": 1e300,
     "empty": {}, "el": []}
got = send('tasks.echo', (v,))
emit(nested=describe(lambda: got.get(timeout=TIMEOUT) == v))
emit(nested_repr=describe(lambda: repr(got.get(timeout=TIMEOUT))), nested_expected=repr(v))
emit(none=call('tasks.echo', (None,)))
emit(true=call('tasks.echo', (True,)))
emit(str=call('tasks.echo', ("\u00fcnic\u00f8de \U0001f600",)))
nan = send('tasks.echo', (float('nan'),))
emit(nan=describe(lambda: math.isnan(nan.get(timeout=TIMEOUT))))
emit(inf=call('tasks.echo', (float('-inf'),)))
emit(kwargs=call('tasks.add', args=(2,), kwargs={'y': 3}))
emit(allkw=call('tasks.add', kwargs={'x': 10, 'y': 20}))
emit(xsum=call('tasks.xsum', ([1, 2, 3.5],)))
emit(xsum_int=call('tasks.xsum', ([1, 2, 3],)))
emit(mul=call('tasks.mul', (6, 7)))
emit(mulf=call('tasks.mul', (1.5, 2)))
emit(strcat=call('tasks.add', ("ab", "cd")))
`

func checkValues(t *testing.T, r pyResult) {
	t.Helper()
	wantValue(t, "add(2, 2)", r.outcome(t, "add"), "4", "int")
	wantValue(t, "add(2.0, 2)", r.outcome(t, "addf"), "4.0", "float")
	wantValue(t, "add(2**60, 1)", r.outcome(t, "big"), "1152921504606846977", "int")
	wantValue(t, "echo(2**60+1)", r.outcome(t, "bigecho"), "1152921504606846977", "int")
	wantValue(t, "echo(2**70)", r.outcome(t, "huge"), "1180591620717411303424", "int")
	wantValue(t, "add(-2**64, -1)", r.outcome(t, "neghuge"), "-18446744073709551617", "int")
	if o := r.outcome(t, "nested"); !o.OK || o.Repr != "True" {
		var exp string
		r.get(t, "nested_expected", &exp)
		t.Errorf("echo(nested) != nested: %s\n got %s\nwant %s", o, r.outcome(t, "nested_repr").Repr, exp)
	}
	wantValue(t, "echo(None)", r.outcome(t, "none"), "None", "NoneType")
	wantValue(t, "echo(True)", r.outcome(t, "true"), "True", "bool")
	wantValue(t, "echo(unicode)", r.outcome(t, "str"), "'ünicøde 😀'", "str")
	wantValue(t, "math.isnan(echo(nan))", r.outcome(t, "nan"), "True", "bool")
	wantValue(t, "echo(-inf)", r.outcome(t, "inf"), "-inf", "float")
	wantValue(t, "add(2, y=3)", r.outcome(t, "kwargs"), "5", "int")
	wantValue(t, "add(x=10, y=20)", r.outcome(t, "allkw"), "30", "int")
	wantValue(t, "xsum([1, 2, 3.5])", r.outcome(t, "xsum"), "6.5", "float")
	wantValue(t, "xsum([1, 2, 3])", r.outcome(t, "xsum_int"), "6", "int")
	wantValue(t, "mul(6, 7)", r.outcome(t, "mul"), "42", "int")
	wantValue(t, "mul(1.5, 2)", r.outcome(t, "mulf"), "3.0", "float")
	wantValue(t, "add('ab', 'cd')", r.outcome(t, "strcat"), "'abcd'", "str")
}

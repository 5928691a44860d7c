package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestCanvas runs Python-built workflows (chains, links, chords) and task
// options (retry, countdown, eta, expires, time limits) on a gworker worker.
func TestCanvas(t *testing.T) {
	t.Parallel()
	q := uniqueQueue(t, "canvas")
	w := startWorker(t, workerOptions{Queues: []string{q}, Concurrency: 4})
	client := pyClient{Conf: map[string]any{"task_default_queue": q}}
	const sigs = `
from celery import chain, group, chord
def S(name, *args, **kw):
    return app.signature(name, args, kw)
def SI(name, *args, **kw):
    return app.signature(name, args, kw, immutable=True)
`

	t.Run("Chain", func(t *testing.T) {
		t.Parallel()
		r := client.run(t, sigs+`
res = track(chain(S('tasks.add', 2, 2), S('tasks.add', 4), S('tasks.mul', 8)).apply_async())
emit(chain=describe(lambda: res.get(timeout=TIMEOUT)))
emit(parent=describe(lambda: res.parent.get(timeout=TIMEOUT)))
emit(root=describe(lambda: res.parent.parent.get(timeout=TIMEOUT)))
res = track((SI('tasks.add', 1, 1) | SI('tasks.add', 2, 2)).apply_async())
emit(immutable=describe(lambda: res.get(timeout=TIMEOUT)), immutable_parent=describe(lambda: res.parent.get(timeout=TIMEOUT)))
res = track(chain(S('tasks.add', 1, 1), group(S('tasks.add', 1), S('tasks.add', 2)), S('tasks.xsum')).apply_async())
emit(with_group=describe(lambda: res.get(timeout=TIMEOUT)))
res = track(chain(S('tasks.add', 1, 1), S('tasks.raise_error'), S('tasks.add', 5)).apply_async())
emit(failing=describe(lambda: res.get(timeout=TIMEOUT)), failing_tail=res.id)
`)
		wantValue(t, "chain add(2,2) | add(4) | mul(8)", r.outcome(t, "chain"), "64", "int")
		wantValue(t, "chain parent", r.outcome(t, "parent"), "8", "int")
		wantValue(t, "chain root", r.outcome(t, "root"), "4", "int")
		wantValue(t, "immutable chain", r.outcome(t, "immutable"), "4", "int")
		wantValue(t, "immutable chain parent", r.outcome(t, "immutable_parent"), "2", "int")
		wantValue(t, "chain with a group (chord upgrade)", r.outcome(t, "with_group"), "7", "int")
		// raise_error gets the previous result as its message.
		wantExc(t, "chain with a failing step", r.outcome(t, "failing"), "KeyError")
		// The failure is propagated to the rest of the chain, so the
		// chain's own result fails too.
		var tail string
		r.get(t, "failing_tail", &tail)
		m := waitMeta(t, tail, defaultWait, "FAILURE")
		var exc excDict
		if err := json.Unmarshal(m.Result, &exc); err != nil || exc.Type != "KeyError" {
			t.Errorf("the tail of a failed chain stored %s, want the KeyError", m.Result)
		}
	})

	t.Run("ChainProtocolV1", func(t *testing.T) {
		t.Parallel()
		// Protocol 1 has no chain field: each step links the next one.
		v1 := pyClient{Conf: map[string]any{"task_default_queue": q, "task_protocol": 1}}
		r := v1.run(t, sigs+`
res = track(chain(S('tasks.add', 2, 2), S('tasks.add', 4), S('tasks.mul', 8)).apply_async())
emit(chain=describe(lambda: res.get(timeout=TIMEOUT)))
res = track(chord([S('tasks.add', i, i) for i in range(3)])(S('tasks.xsum')))
emit(chord=describe(lambda: res.get(timeout=TIMEOUT)))
`)
		wantValue(t, "protocol 1 chain", r.outcome(t, "chain"), "64", "int")
		wantValue(t, "protocol 1 chord", r.outcome(t, "chord"), "6", "int")
	})

	t.Run("LinkAndLinkError", func(t *testing.T) {
		t.Parallel()
		r := client.run(t, sigs+`
cb = S('tasks.mul', 10)
cb.freeze()
res = send('tasks.add', (2, 2), link=cb)
IDS.append(cb.id)
emit(task=describe(lambda: res.get(timeout=TIMEOUT)))
emit(link=describe(lambda: app.AsyncResult(cb.id).get(timeout=TIMEOUT)))
eb = S('tasks.echo')
eb.freeze()
IDS.append(eb.id)
bad = send('tasks.raise_error', link_error=eb)
emit(bad=describe(lambda: bad.get(timeout=TIMEOUT)))
emit(errback=describe(lambda: app.AsyncResult(eb.id).get(timeout=TIMEOUT)), bad_id=bad.id)
`)
		wantValue(t, "task with link", r.outcome(t, "task"), "4", "int")
		wantValue(t, "link callback mul(4, 10)", r.outcome(t, "link"), "40", "int")
		wantExc(t, "task with link_error", r.outcome(t, "bad"), "KeyError")
		var badID string
		r.get(t, "bad_id", &badID)
		wantValue(t, "errback echo(<failed id>)", r.outcome(t, "errback"), "'"+badID+"'", "str")
	})

	t.Run("Chord", func(t *testing.T) {
		t.Parallel()
		r := client.run(t, sigs+`
res = track(chord([S('tasks.add', i, i) for i in range(5)])(S('tasks.xsum')))
emit(chord=describe(lambda: res.get(timeout=TIMEOUT)))
res = track(chord([S('tasks.add', 1, 1), S('tasks.raise_error'), S('tasks.add', 2, 2)])(S('tasks.xsum')))
# The result returned by the chord call raises the first failed header
# task's error (it checks its parent group first).
emit(via_parent=describe(lambda: res.get(timeout=TIMEOUT)), body_id=res.id)
`)
		wantValue(t, "chord sum of add(i, i)", r.outcome(t, "chord"), "20", "int")
		if o := r.outcome(t, "via_parent"); o.OK || (o.Exc != "KeyError" && o.Exc != "ChordError") {
			t.Errorf("chord result get(): %s, want KeyError or ChordError", o)
		}
		// The chord's own result, read by id in a new process, is the
		// ChordError the worker stored.
		var bodyID string
		r.get(t, "body_id", &bodyID)
		r = client.run(t, fmt.Sprintf(`
from celery.exceptions import ChordError
body = app.AsyncResult(%s)
try:
    body.get(timeout=TIMEOUT)
    emit(failing={"ok": True})
except BaseException as e:
    d = exc_info(e)
    d["is_chord_error"] = isinstance(e, ChordError)
    emit(failing=d)
emit(body_state=body.state)
`, pyString(bodyID)))
		var failing struct {
			outcome
			IsChordError bool `json:"is_chord_error"`
		}
		r.get(t, "failing", &failing)
		if failing.OK || !failing.IsChordError || !strings.Contains(failing.Str, "KeyError") {
			t.Errorf("chord with a failing part: %s, want ChordError naming the KeyError", failing.outcome)
		}
		var st string
		if r.get(t, "body_state", &st); st != "FAILURE" {
			t.Errorf("chord body state %s, want FAILURE", st)
		}
	})

	t.Run("Retry", func(t *testing.T) {
		t.Parallel()
		r := client.run(t, `
res = send('tasks.flaky', (3,))
emit(flaky=describe(lambda: res.get(timeout=TIMEOUT)))
`)
		wantValue(t, "flaky(3)", r.outcome(t, "flaky"), "3", "int")
	})

	t.Run("CountdownAndETA", func(t *testing.T) {
		t.Parallel()
		r := client.run(t, `
from datetime import datetime, timedelta, timezone
before = datetime.utcnow()
res = send('tasks.add', (1, 2), countdown=1)
emit(countdown=describe(lambda: res.get(timeout=TIMEOUT)))
emit(countdown_not_early=res.date_done >= before + timedelta(seconds=1))
eta = datetime.now(timezone.utc) + timedelta(seconds=1)
res = send('tasks.add', (3, 4), eta=eta)
emit(eta=describe(lambda: res.get(timeout=TIMEOUT)))
emit(eta_not_early=res.date_done >= eta.replace(tzinfo=None))
res = send('tasks.add', (5, 6), eta=datetime.now(timezone.utc) - timedelta(seconds=30))
emit(past_eta=describe(lambda: res.get(timeout=TIMEOUT)))
`)
		wantValue(t, "add with countdown=1", r.outcome(t, "countdown"), "3", "int")
		wantValue(t, "add with eta", r.outcome(t, "eta"), "7", "int")
		wantValue(t, "add with an eta in the past", r.outcome(t, "past_eta"), "11", "int")
		var b bool
		if r.get(t, "countdown_not_early", &b); !b {
			t.Errorf("the countdown task finished before its countdown")
		}
		if r.get(t, "eta_not_early", &b); !b {
			t.Errorf("the eta task finished before its eta")
		}
	})

	t.Run("Expires", func(t *testing.T) {
		t.Parallel()
		// The worker holds the message until its countdown, and the message
		// has expired by then. (An expiry already past when sent would let
		// RabbitMQ drop the message through its expiration property.)
		r := client.run(t, `
from celery.exceptions import TaskRevokedError
res = send('tasks.add', (1, 1), countdown=3, expires=1)
try:
    res.get(timeout=TIMEOUT)
    emit(expired={"ok": True})
except BaseException as e:
    d = exc_info(e)
    d["is_revoked"] = isinstance(e, TaskRevokedError)
    d["state"] = res.state
    emit(expired=d)
emit(fresh=call('tasks.add', (2, 2), expires=60))
`)
		var expired struct {
			outcome
			IsRevoked bool   `json:"is_revoked"`
			State     string `json:"state"`
		}
		r.get(t, "expired", &expired)
		if expired.OK || !expired.IsRevoked || expired.State != "REVOKED" {
			t.Errorf("expired task: %s (state %s), want TaskRevokedError and REVOKED", expired.outcome, expired.State)
		}
		wantValue(t, "add with expires=60", r.outcome(t, "fresh"), "4", "int")
	})

	t.Run("TimeLimits", func(t *testing.T) {
		t.Parallel()
		r := client.run(t, `
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
def check(cls, **opts):
    res = send('tasks.sleep', (10,), **opts)
    try:
        v = res.get(timeout=TIMEOUT)
        return {"ok": True, "repr": repr(v)}
    except BaseException as e:
        d = exc_info(e)
        d["isinstance"] = isinstance(e, cls)
        return d
emit(soft=check(SoftTimeLimitExceeded, soft_time_limit=1))
emit(hard=check(TimeLimitExceeded, time_limit=1))
emit(within=call('tasks.sleep', (0.1,), time_limit=5, soft_time_limit=4))
`)
		for _, k := range []string{"soft", "hard"} {
			var o struct {
				outcome
				IsInstance bool `json:"isinstance"`
			}
			r.get(t, k, &o)
			if o.OK || !o.IsInstance {
				t.Errorf("%s time limit: %s", k, o.outcome)
			}
		}
		wantValue(t, "sleep within its limits", r.outcome(t, "within"), "0.1", "float")
	})

	t.Cleanup(func() { w.requireAlive() })
}

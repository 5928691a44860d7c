package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gworker/gworker/internal/testing/testenv"
)

// stampTasksModule is the Celery 5.5.3 app of the stamp tests' Python
// worker: pystamps reports the stamps it ran with (request.stamped_headers
// and request.stamps), sleep can be terminated (prefork pool).
const stampTasksModule = `
import json, os, time
from celery import Celery
app = Celery('stamptasks')
app.conf.update(broker_url=os.environ['GW_BROKER'], result_backend=os.environ['GW_BACKEND'])
app.conf.update(broker_transport_options={'confirm_publish': True})

@app.task(bind=True, name='tasks.pystamps')
def pystamps(self, *args):
    return {'stamped_headers': sorted(self.request.stamped_headers or []), 'stamps': self.request.stamps or {}}

@app.task(name='tasks.sleep')
def sleep(seconds):
    time.sleep(seconds)
    return seconds

@app.task(name='tasks.add')
def add(x, y):
    return x + y
`

// startStampWorker starts a Celery 5.5.3 worker (prefork, 2 processes,
// so that terminate works) with stampTasksModule on queue.
func startStampWorker(t testing.TB, broker, name, queue string) *pyWorker {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "stamptasks.py"), []byte(stampTasksModule), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.Python(), "-m", "celery", "-A", "stamptasks", "worker",
		"-P", "prefork", "-c", "2", "-Q", queue, "-n", name, "-l", "INFO",
		"--without-mingle", "--without-gossip", "--without-heartbeat")
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "GW_BROKER="+broker, "GW_BACKEND="+backendURL,
		"PYTHONPATH="+dir+":"+testenv.Celery55Site(t), "PYTHONDONTWRITEBYTECODE=1")
	return runPyWorker(t, cmd, name, "celery 5.5 stamp worker", 90*time.Second)
}

// stampPrelude stamps signatures as a Celery 5.5.3 StampingVisitor does,
// with mystamp='m1' and mlist=['a', 'b'], and names tasks on gworker's
// queue QG and the Python worker's QP.
const stampPrelude = `
from celery import chain, chord
from celery.canvas import StampingVisitor

class Visitor(StampingVisitor):
    def on_signature(self, sig, **headers):
        return {'mystamp': 'm1', 'mlist': ['a', 'b']}

def S(name, *args, q=None):
    return app.signature(name, args=args, queue=q or QG)

def stamped(sig):
    sig.stamp(visitor=Visitor())
    return sig
`

// Celery 5.5.3 stamps a workflow at its producer; the messages gworker
// publishes from it (the next chain link, a link callback, an errback, a
// chord body) keep the stamps: the Celery 5.5.3 worker that runs them
// reads them in request.stamps, as if a Celery worker had sent them.
func TestStampsOnGworkerFollowups(t *testing.T) {
	t.Parallel()
	qg, qp := uniqueQueue(t, "stamp-go"), uniqueQueue(t, "stamp-py")
	startWorker(t, workerOptions{Queues: []string{qg}})
	startStampWorker(t, env.brokerURL, "py55-"+testenv.Suffix()+"@stamps", qp)
	res := py55(t, "", nil).run(t, fmt.Sprintf("QG, QP = %s, %s\n", pyString(qg), pyString(qp))+stampPrelude+`
r = stamped(chain(S('tasks.add', 1, 2), S('tasks.pystamps', q=QP))).apply_async()
track(r)
emit(chain=describe(lambda: r.get(timeout=TIMEOUT)))

cb = S('tasks.pystamps', q=QP)
cb.freeze()
t = S('tasks.add', 2, 3)
t.link(cb)
track(stamped(t).apply_async())
IDS.append(cb.id)
emit(link=describe(lambda: app.AsyncResult(cb.id).get(timeout=TIMEOUT)))

eb = S('tasks.pystamps', q=QP)
eb.freeze()
t = S('tasks.raise_error', 'x')
t.link_error(eb)
track(stamped(t).apply_async())
IDS.append(eb.id)
emit(errback=describe(lambda: app.AsyncResult(eb.id).get(timeout=TIMEOUT)))

r = stamped(chord([S('tasks.add', 1, 1), S('tasks.add', 2, 2)], S('tasks.pystamps', q=QP))).apply_async()
track(r)
emit(chord=describe(lambda: r.get(timeout=TIMEOUT)))
`)
	want := `{'stamped_headers': ['mlist', 'mystamp'], 'stamps': {'mlist': ['a', 'b'], 'mystamp': 'm1'}}`
	for _, k := range []string{"chain", "link", "errback", "chord"} {
		o := res.outcome(t, k)
		var got struct {
			Names  []string       `json:"stamped_headers"`
			Stamps map[string]any `json:"stamps"`
		}
		if !o.OK || json.Unmarshal(o.Value, &got) != nil || fmt.Sprint(got.Names) != "[mlist mystamp]" ||
			fmt.Sprint(got.Stamps) != "map[mlist:[a b] mystamp:m1]" {
			t.Errorf("%s: the task gworker sent ran with %s, want %s", k, o, want)
		}
	}
}

// cliReply is a node's reply as Celery's `celery control` prints it: the
// node, OK or ERROR, and the reply's text on the next line.
var cliReply = regexp.MustCompile(`(?m)^->\s+\S+: (OK|ERROR)\s*\n\s+(.*)$`)

// cliReplyOf returns the status and text of the one reply in the output
// of Celery's `celery control`.
func cliReplyOf(t testing.TB, out string) string {
	t.Helper()
	m := cliReply.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no reply in:\n%s", out)
	}
	return m[1] + " " + strings.TrimSpace(m[2])
}

// revoke_by_stamped_headers from Celery 5.5.3's command line and its
// app.control API: gworker revokes the stamped tasks it holds for their
// countdown now, terminates a running one, revokes a retried one (its
// retry keeps its stamps), and answers with the text a Celery 5.5.3
// worker answers to the same command in the same situation.
func TestRevokeByStampedHeadersAsCelery55(t *testing.T) {
	t.Parallel()
	_, broker := privateVhost(t)
	qg, qp := uniqueQueue(t, "rbs-go"), uniqueQueue(t, "rbs-py")
	goNode, pyNode := "go-"+testenv.Suffix()+"@rbs", "py55-"+testenv.Suffix()+"@rbs"
	gw := startWorker(t, workerOptions{Queues: []string{qg}, Broker: broker, Name: goNode})
	startStampWorker(t, broker, pyNode, qp)
	py := py55(t, broker, nil)

	// Held for their countdown: b1 on each worker, b2 on gworker.
	var held struct{ Go, Py, Other string }
	py.run(t, fmt.Sprintf(`
emit(held={'Go': send('tasks.add', (1, 2), queue=%[1]s, countdown=120, stamped_headers=['batch'], batch='b1').id,
           'Py': send('tasks.add', (1, 2), queue=%[2]s, countdown=120, stamped_headers=['batch'], batch='b1').id,
           'Other': send('tasks.add', (1, 2), queue=%[1]s, countdown=120, stamped_headers=['batch'], batch='b2').id})
`, pyString(qg), pyString(qp))).get(t, "held", &held)
	if !eventually(30*time.Second, func() bool {
		out, err := celery55CLI(t, 60*time.Second, "-b", broker, "inspect", "scheduled", "-d", goNode, "-t", "3")
		return err == nil && strings.Contains(out, held.Go) && strings.Contains(out, held.Other)
	}) {
		t.Fatal("celery 5.5.3 inspect scheduled does not list the held tasks")
	}
	replies := map[string]string{}
	for _, node := range []string{goNode, pyNode} {
		out, err := celery55CLI(t, 60*time.Second, "-b", broker, "control", "revoke_by_stamped_headers", "batch=b1", "-d", node, "-t", "5")
		if err != nil {
			t.Fatalf("celery control revoke_by_stamped_headers -d %s: %v\n%s", node, err, out)
		}
		replies[node] = cliReplyOf(t, out)
	}
	if want := "OK headers {'batch': 'b1'} flagged as revoked, but not terminated"; replies[goNode] != want || replies[pyNode] != want {
		t.Errorf("replies: gworker %q, celery %q; want %q", replies[goNode], replies[pyNode], want)
	}
	// gworker discards the held task now (Celery when its countdown ends).
	if m := waitMeta(t, held.Go, defaultWait, "REVOKED"); m.Status != "REVOKED" {
		t.Errorf("held stamped task: %s", m.Status)
	}
	if !gw.waitLog("Discarding revoked task: tasks.add["+held.Go+"] (revoked by header: {'batch': 'b1'})", 10*time.Second) {
		t.Errorf("no discard line in the log:\n%s", gw.log())
	}
	if m := getMeta(t, held.Other); m != nil && m.Status != "PENDING" {
		t.Errorf("the task stamped b2 is %s", m.Status)
	}

	// Running, with terminate: the same reply from both workers.
	var run struct{ Go, Py string }
	py.run(t, fmt.Sprintf(`
emit(run={'Go': send('tasks.sleep', (60,), queue=%s, stamped_headers=['batch'], batch=['r1', 'r2']).id,
          'Py': send('tasks.sleep', (60,), queue=%s, stamped_headers=['batch'], batch=['r1', 'r2']).id})
`, pyString(qg), pyString(qp))).get(t, "run", &run)
	for _, node := range []string{goNode, pyNode} {
		id := run.Go
		if node == pyNode {
			id = run.Py
		}
		if !eventually(30*time.Second, func() bool {
			out, err := celery55CLI(t, 60*time.Second, "-b", broker, "inspect", "active", "-d", node, "-t", "3")
			return err == nil && strings.Contains(out, id)
		}) {
			t.Fatalf("%s: celery 5.5.3 inspect active does not list the running task", node)
		}
	}
	var term map[string]string
	py.run(t, fmt.Sprintf(`
out = {}
for node in (%s, %s):
    r = app.control.revoke_by_stamped_headers({'batch': ['r2', 'r9']}, terminate=True, signal='TERM', destination=[node], reply=True, timeout=5)
    out[node] = repr(r[0][node]) if r else 'no reply'
emit(term=out)
`, pyString(goNode), pyString(pyNode))).get(t, "term", &term)
	want := `{'ok': "headers defaultdict(<class 'set'>, {'batch': {'r2'}}) revoked"}`
	if term[goNode] != want || term[pyNode] != want {
		t.Errorf("terminate replies: gworker %s, celery %s; want %s", term[goNode], term[pyNode], want)
	}
	for _, id := range []string{run.Go, run.Py} {
		if m := waitMeta(t, id, defaultWait, "REVOKED"); m.Status != "REVOKED" {
			t.Errorf("terminated task %s: %s", id, m.Status)
		}
	}

	// A retried task keeps its stamps: revoked by them while it waits
	// for its retry's countdown.
	var retried string
	py.run(t, fmt.Sprintf(`
emit(retried=send('tasks.retry_later', (1, 120), queue=%s, stamped_headers=['batch'], batch='rt').id)
`, pyString(qg))).get(t, "retried", &retried)
	if !gw.waitLog("["+retried+"] retry", defaultWait) {
		t.Fatalf("the task did not retry:\n%s", gw.log())
	}
	out, err := celery55CLI(t, 60*time.Second, "-b", broker, "control", "revoke_by_stamped_headers", "batch=rt", "-d", goNode, "-t", "5")
	if err != nil || cliReplyOf(t, out) != "OK headers {'batch': 'rt'} flagged as revoked, but not terminated" {
		t.Errorf("revoke of the retried task: %v\n%s", err, out)
	}
	if m := waitMeta(t, retried, defaultWait, "REVOKED"); m.Status != "REVOKED" {
		t.Errorf("retried stamped task: %s", m.Status)
	}
	gw.requireAlive()
}

// Both halves together: a stamp revoked while the first task of a
// Celery 5.5.3 stamped chain runs on gworker lets that task finish (no
// terminate) and revokes the next link, which gworker itself publishes
// with the chain's stamps, when it arrives.
func TestRevokedStampStopsAChainGworkerContinues(t *testing.T) {
	t.Parallel()
	q := uniqueQueue(t, "stamp-chain")
	node := "go-" + testenv.Suffix() + "@stampchain"
	gw := startWorker(t, workerOptions{Queues: []string{q}, Name: node})
	var ids struct{ First, Next string }
	py55(t, "", nil).run(t, fmt.Sprintf("QG, QP = %s, None\n", pyString(q))+stampPrelude+`
r = stamped(chain(S('tasks.sleep', 8), S('tasks.add', 2))).apply_async()
track(r)
emit(ids={'First': r.parent.id, 'Next': r.id})
`).get(t, "ids", &ids)
	if !gw.waitLog("Task tasks.sleep["+ids.First+"] received", defaultWait) {
		t.Fatalf("the chain's first task did not arrive:\n%s", gw.log())
	}
	out, err := celery55CLI(t, 60*time.Second, "-b", env.brokerURL, "control", "revoke_by_stamped_headers", "mystamp=m1", "-d", node, "-t", "5")
	if err != nil || cliReplyOf(t, out) != "OK headers {'mystamp': 'm1'} flagged as revoked, but not terminated" {
		t.Fatalf("revoke_by_stamped_headers: %v\n%s", err, out)
	}
	if m := waitMeta(t, ids.First, defaultWait, "SUCCESS", "REVOKED"); m.Status != "SUCCESS" {
		t.Errorf("the running first task is %s; without terminate it runs to the end", m.Status)
	}
	if m := waitMeta(t, ids.Next, defaultWait, "SUCCESS", "REVOKED"); m.Status != "REVOKED" {
		t.Errorf("the next link is %s, want REVOKED by its stamp", m.Status)
	}
	if !gw.waitLog("Discarding revoked task: tasks.add["+ids.Next+"] (revoked by header: {'mystamp': 'm1'})", 10*time.Second) {
		t.Errorf("no discard line:\n%s", gw.log())
	}
}

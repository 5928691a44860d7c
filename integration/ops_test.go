package integration

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gworker/gworker/internal/testing/testenv"
)

// gwopsApp is the Celery app the CLI tests load, configured from the
// environment.
const gwopsApp = "from celery import Celery\nimport os\napp = Celery('gwopsapp')\n" +
	"app.conf.update(broker_url=os.environ['GW_BROKER'], result_backend=os.environ['GW_BACKEND'])\n"

// celeryCLI runs `python3 -m celery -A gwopsapp <args>` against broker and
// returns its combined output. The app module is written to a temporary
// directory of the test.
func celeryCLI(t *testing.T, broker string, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gwopsapp.py"), []byte(gwopsApp), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Python(), append([]string{"-m", "celery", "-A", "gwopsapp"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "GW_BROKER="+broker, "GW_BACKEND="+backendURL, "PYTHONDONTWRITEBYTECODE=1")
	// celery events --dump runs until interrupted.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// nodeName is the node name a worker started with -n name@%h has.
func nodeName(p *gworkerProc) string {
	host, _ := os.Hostname()
	return strings.ReplaceAll(p.name, "%h", host)
}

// TestCeleryCLISeesAndSteersGworker drives a gworker node with Celery
// 5.2.6's own command line: inspect, status, control revoke and events.
func TestCeleryCLISeesAndSteersGworker(t *testing.T) {
	_, broker := privateVhost(t)
	q := uniqueQueue(t, "ops-cli")
	w := startWorker(t, workerOptions{Queues: []string{q}, Broker: broker, Extra: []string{"-E", "--metrics-addr", "127.0.0.1:0"}})
	node := nodeName(w)

	// gworker's own client speaks the same protocol.
	stdout, stderr, code := runGworker(t, 60*time.Second, "inspect", "ping", "-b", broker, "-d", node, "--timeout", "5")
	if code != 0 || !strings.Contains(stdout, node+": OK") || !strings.Contains(stdout, "pong") {
		t.Fatalf("gworker inspect ping: %d\n%s\n%s", code, stdout, stderr)
	}
	// A method celery's command line does not offer is refused before
	// anything is sent, as celery's is (a node would answer KeyError).
	stdout, stderr, code = runGworker(t, 60*time.Second, "control", "nosuch", "-b", broker, "-d", node, "--timeout", "5")
	if code != 2 || !strings.Contains(stderr, "'nosuch' is not one of 'revoke', 'revoke_by_stamped_headers'") {
		t.Fatalf("gworker control nosuch: %d\n%s\n%s", code, stdout, stderr)
	}
	metricsURL := metricsBase(t, w)

	out, err := celeryCLI(t, broker, 60*time.Second, "inspect", "ping", "-d", node, "--timeout", "5")
	if err != nil || !strings.Contains(out, node+": OK") || !strings.Contains(out, "pong") {
		t.Fatalf("inspect ping: %v\n%s", err, out)
	}
	out, err = celeryCLI(t, broker, 60*time.Second, "status", "--timeout", "5")
	if err != nil || !strings.Contains(out, node+": OK") || !strings.Contains(out, "1 node online") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	out, err = celeryCLI(t, broker, 60*time.Second, "inspect", "registered", "-d", node, "--timeout", "5")
	if err != nil || !strings.Contains(out, "* tasks.add") || strings.Contains(out, "celery.chord_unlock") {
		t.Fatalf("inspect registered: %v\n%s", err, out)
	}

	// A running task shows in `inspect active`, and its start in `stats`.
	py := pyClient{Broker: broker}
	res := py.run(t, `
r = send('tasks.sleep', (30,), queue=`+pyString(q)+`)
emit(id=r.id)
`)
	var sleepID string
	res.get(t, "id", &sleepID)
	if !eventually(defaultWait, func() bool {
		out, err = celeryCLI(t, broker, 60*time.Second, "inspect", "active", "-d", node, "--timeout", "5", "-j")
		return err == nil && strings.Contains(out, sleepID)
	}) {
		t.Fatalf("inspect active never showed %s: %v\n%s", sleepID, err, out)
	}
	var active map[string][]map[string]any
	if err := json.Unmarshal([]byte(lastJSON(out)), &active); err != nil {
		t.Fatalf("inspect active -j: %v\n%s", err, out)
	}
	a := active[node][0]
	if a["name"] != "tasks.sleep" || a["acknowledged"] != true || a["hostname"] != node || a["worker_pid"] == nil || a["time_start"] == nil {
		t.Fatalf("active task %v", a)
	}
	out, err = celeryCLI(t, broker, 60*time.Second, "inspect", "stats", "-d", node, "--timeout", "5", "-j")
	var stats map[string]map[string]any
	if err != nil || json.Unmarshal([]byte(lastJSON(out)), &stats) != nil {
		t.Fatalf("inspect stats: %v\n%s", err, out)
	}
	if tot, _ := stats[node]["total"].(map[string]any); tot["tasks.sleep"] != 1.0 {
		t.Fatalf("stats total %v", stats[node]["total"])
	}
	if pool, _ := stats[node]["pool"].(map[string]any); pool["max-concurrency"] != 2.0 {
		t.Fatalf("stats pool %v", stats[node]["pool"])
	}

	// celery control terminate SIGTERM <id> stops the running task.
	out, err = celeryCLI(t, broker, 60*time.Second, "control", "terminate", "SIGTERM", sleepID, "-d", node, "--timeout", "5")
	if err != nil || !strings.Contains(out, "terminate: "+sleepID) {
		t.Fatalf("control revoke --terminate: %v\n%s", err, out)
	}
	if m := waitMeta(t, sleepID, defaultWait, "REVOKED"); m == nil {
		t.Fatal("terminated task not REVOKED")
	}

	if body := httpGet(t, metricsURL+"/metrics"); !strings.Contains(body, `gworker_tasks_total{state="REVOKED",task="tasks.sleep"} 1`) {
		t.Errorf("/metrics after a terminate:\n%s", body)
	}
	if body := httpGet(t, metricsURL+"/readyz"); body != "ok\n" {
		t.Errorf("/readyz: %q", body)
	}

	// celery events --dump shows the node's heartbeats and task events.
	// The task is sent once the dump shows a heartbeat, so its receiver is
	// bound.
	dump := startCelery(t, broker, "events", "--dump")
	if !eventually(defaultWait, func() bool { return strings.Contains(dump.String(), "heartbeat: active=") }) {
		t.Fatalf("celery events --dump shows no heartbeat:\n%s", dump.String())
	}
	res = py.run(t, `
emit(r=call('tasks.add', (20, 22), queue=`+pyString(q)+`))
`)
	wantValue(t, "add", res.outcome(t, "r"), "42", "int")
	if !eventually(defaultWait, func() bool { return strings.Contains(dump.String(), "task succeeded") }) {
		t.Errorf("celery events --dump shows no task-succeeded:\n%s", dump.String())
	}
	out = dump.String()
	for _, want := range []string{node + " [", "task received: tasks.add", "task started", "task succeeded", "result=42"} {
		if !strings.Contains(out, want) {
			t.Errorf("celery events --dump lacks %q:\n%s", want, out)
		}
	}
}

// startCelery starts `python3 -m celery -A gwopsapp <args>` in the
// background, its output collected in the returned buffer; it is
// interrupted when t ends.
func startCelery(t *testing.T, broker string, args ...string) *syncBuffer {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gwopsapp.py"), []byte(gwopsApp), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.Python(), append([]string{"-m", "celery", "-A", "gwopsapp"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "GW_BROKER="+broker, "GW_BACKEND="+backendURL, "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1")
	buf := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return buf
}

// lastJSON returns the last line of out that looks like a JSON object.
func lastJSON(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(strings.TrimSpace(lines[i]), "{") {
			return lines[i]
		}
	}
	return ""
}

// TestRevokeFromPython revokes a task waiting for its countdown and a
// running one (terminate=True) with AsyncResult.revoke, as an application
// does, and checks the other control calls Python makes.
func TestRevokeFromPython(t *testing.T) {
	_, broker := privateVhost(t)
	q := uniqueQueue(t, "ops-revoke")
	statedb := filepath.Join(t.TempDir(), "worker.state")
	w := startWorker(t, workerOptions{Queues: []string{q}, Broker: broker, Extra: []string{"--statedb", statedb}})
	node := nodeName(w)
	res := pyClient{Broker: broker}.run(t, `
from celery.exceptions import TaskRevokedError
node = `+pyString(node)+`
insp = app.control.inspect(destination=[node], timeout=5)
queued = send('tasks.add', (1, 2), queue=`+pyString(q)+`, countdown=60)
deadline = time.time() + 30
while time.time() < deadline:
    s = (insp.scheduled() or {}).get(node) or []
    if any(e['request']['id'] == queued.id for e in s):
        break
    time.sleep(0.2)
emit(scheduled=s)
queued.revoke()
emit(queued=describe(lambda: queued.get(timeout=TIMEOUT)), queued_state=queued.state)

running = send('tasks.sleep', (60,), queue=`+pyString(q)+`)
while time.time() < deadline:
    a = (insp.active() or {}).get(node) or []
    if any(e['id'] == running.id for e in a):
        break
    time.sleep(0.2)
t0 = time.time()
running.revoke(terminate=True)
emit(running=describe(lambda: running.get(timeout=TIMEOUT)), running_state=running.state, took=time.time() - t0)

# A task revoked before it is sent is never run. The revoke waits for the
# node's reply: the broadcast and the task travel on different queues, so
# without it the task may arrive first (on Celery too).
later = app.AsyncResult('`+testenv.UUID()+`')
emit(later_ack=app.control.revoke(later.id, destination=[node], reply=True, timeout=5))
IDS.append(later.id)
app.send_task('tasks.add', (1, 1), task_id=later.id, queue=`+pyString(q)+`)
emit(later=describe(lambda: later.get(timeout=TIMEOUT)))
emit(revoked=sorted(insp.revoked()[node]))
emit(unknown=app.control.broadcast('no_such_command', reply=True, destination=[node], timeout=5))
emit(rate=app.control.rate_limit('tasks.add', '100/m', destination=[node], reply=True, timeout=5))
emit(bad_rate=app.control.rate_limit('tasks.nope', '1/s', destination=[node], reply=True, timeout=5))
emit(queues=[q['name'] for q in insp.active_queues()[node]])
emit(add=app.control.add_consumer('`+q+`-extra', destination=[node], reply=True, timeout=5))
emit(queues2=sorted(q['name'] for q in insp.active_queues()[node]))
emit(grow=app.control.pool_grow(2, destination=[node], reply=True, timeout=5))
emit(conc=insp.stats()[node]['pool']['max-concurrency'])
`)
	var sched []map[string]any
	res.get(t, "scheduled", &sched)
	if len(sched) != 1 || sched[0]["priority"] != 6.0 {
		t.Fatalf("inspect scheduled %v", sched)
	}
	wantExc(t, "revoked countdown task", res.outcome(t, "queued"), "TaskRevokedError")
	wantExc(t, "terminated running task", res.outcome(t, "running"), "TaskRevokedError")
	// REVOKED is stored at once by the revoke (Celery 5.6.2), then again
	// by the terminated run: a client may see either reason.
	if o := res.outcome(t, "running"); o.Repr != "TaskRevokedError('terminated')" && o.Repr != "TaskRevokedError('revoked')" {
		t.Errorf("terminated: %s", o)
	}
	if o := res.outcome(t, "queued"); o.Repr != "TaskRevokedError('revoked')" {
		t.Errorf("queued: %s", o)
	}
	wantExc(t, "task revoked before it was sent", res.outcome(t, "later"), "TaskRevokedError")
	var revoked []string
	res.get(t, "revoked", &revoked)
	if len(revoked) != 3 {
		t.Errorf("inspect revoked %v", revoked)
	}
	var unknown []map[string]map[string]string
	res.get(t, "unknown", &unknown)
	if len(unknown) != 1 || unknown[0][node]["error"] != "KeyError('no_such_command')" {
		t.Errorf("unknown command %v", unknown)
	}
	var rate, badRate, add, grow []map[string]map[string]string
	res.get(t, "rate", &rate)
	res.get(t, "bad_rate", &badRate)
	res.get(t, "add", &add)
	res.get(t, "grow", &grow)
	if rate[0][node]["ok"] != "new rate limit set successfully" || badRate[0][node]["error"] != "unknown task" ||
		add[0][node]["ok"] != "add consumer "+q+"-extra" || grow[0][node]["ok"] != "pool will grow" {
		t.Errorf("control replies: rate %v, bad rate %v, add_consumer %v, pool_grow %v", rate, badRate, add, grow)
	}
	var queues2 []string
	res.get(t, "queues2", &queues2)
	if len(queues2) != 2 {
		t.Errorf("active_queues after add_consumer %v", queues2)
	}
	var conc int
	res.get(t, "conc", &conc)
	if conc != 4 {
		t.Errorf("max-concurrency after pool_grow %d", conc)
	}
	testenv.DeleteTaskQueue(t, q+"-extra")

	// shutdown stops the worker warmly; the revoked ids survive in the
	// state file, and a new worker started on it still refuses them.
	pyClient{Broker: broker}.run(t, `app.control.shutdown(destination=[`+pyString(node)+`])`)
	if err := w.wait(defaultWait); err != nil {
		t.Fatalf("worker after shutdown command: %v\n%s", err, w.log())
	}
	if b, err := os.ReadFile(statedb); err != nil || !strings.Contains(string(b), revoked[0]) {
		t.Fatalf("state file: %v %s", err, b)
	}
	w2 := startWorker(t, workerOptions{Queues: []string{q}, Broker: broker, Extra: []string{"--statedb", statedb, "--without-mingle"}})
	res = pyClient{Broker: broker}.run(t, `emit(revoked=sorted(app.control.inspect(destination=[`+pyString(nodeName(w2))+`], timeout=5).revoked()[`+pyString(nodeName(w2))+`]))`)
	var again []string
	res.get(t, "revoked", &again)
	if strings.Join(again, ",") != strings.Join(revoked, ",") {
		t.Errorf("revoked after restart %v, want %v", again, revoked)
	}
}

// TestWhatFlowerReads makes the calls Flower 2.0 makes to show workers and
// tasks: the eight inspect methods it polls, and an event receiver feeding
// celery.events.state.State, the model behind its pages.
func TestWhatFlowerReads(t *testing.T) {
	_, broker := privateVhost(t)
	q := uniqueQueue(t, "ops-flower")
	w := startWorker(t, workerOptions{Queues: []string{q}, Broker: broker, Extra: []string{"-E", "--heartbeat-interval", "1"}})
	node := nodeName(w)
	res := pyClient{Broker: broker}.run(t, `
import threading
from celery.events.state import State
node = `+pyString(node)+`
state = State()
ready = threading.Event()
def capture():
    with app.connection() as conn:
        recv = app.events.Receiver(conn, handlers={'*': state.event})
        ready.set()
        recv.capture(limit=None, timeout=15, wakeup=True)
th = threading.Thread(target=capture, daemon=True)
th.start()
ready.wait(10)
time.sleep(1)
insp = app.control.inspect(destination=[node], timeout=5)
replies = {}
for m in ['stats', 'active_queues', 'registered', 'scheduled', 'active', 'reserved', 'revoked', 'conf']:
    r = getattr(insp, m)()
    replies[m] = sorted(r.keys()) if r else None
emit(replies=replies)
ok = call('tasks.add', (2, 3), queue=`+pyString(q)+`)
bad = call('tasks.raise_error', ('oops',), queue=`+pyString(q)+`)
deadline = time.time() + 10
while time.time() < deadline:
    tasks = {t.uuid: t for _, t in state.itertasks()}
    if len(tasks) >= 2 and all(t.state in ('SUCCESS', 'FAILURE') for t in tasks.values()):
        break
    time.sleep(0.2)
wk = state.workers.get(node)
emit(alive=bool(wk and wk.alive), freq=wk.freq if wk else None, sw=wk.sw_ident if wk else None,
     tasks=sorted((t.name, t.state, t.result if t.state == 'SUCCESS' else t.exception) for t in tasks.values()))
`)
	var replies map[string][]string
	res.get(t, "replies", &replies)
	for m, nodes := range replies {
		if len(nodes) != 1 || nodes[0] != node {
			t.Errorf("inspect %s: replies from %v", m, nodes)
		}
	}
	var alive bool
	res.get(t, "alive", &alive)
	if !alive {
		t.Error("events State does not consider the node alive")
	}
	var tasks [][]string
	res.get(t, "tasks", &tasks)
	if len(tasks) != 2 || tasks[0][0] != "tasks.add" || tasks[0][1] != "SUCCESS" || tasks[0][2] != "5" ||
		tasks[1][0] != "tasks.raise_error" || tasks[1][1] != "FAILURE" {
		t.Errorf("tasks seen through events: %v", tasks)
	}
}

// metricsBase finds the address the worker logged for --metrics-addr.
func metricsBase(t *testing.T, p *gworkerProc) string {
	t.Helper()
	re := regexp.MustCompile(`on (http://[0-9.:]+)/metrics`)
	var m []string
	if !eventually(defaultWait, func() bool { m = re.FindStringSubmatch(p.log()); return m != nil }) {
		t.Fatalf("the worker did not log its metrics address:\n%s", p.log())
	}
	return m[1]
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestControlFloodNeverStopsTasks floods the node's pidbox with malformed
// and unknown control messages while tasks run: every task still
// completes, the node still answers, and each kind of bad message is logged
// once at WARNING with its reason.
func TestControlFloodNeverStopsTasks(t *testing.T) {
	_, broker := privateVhost(t)
	q := uniqueQueue(t, "ops-flood")
	w := startWorker(t, workerOptions{Queues: []string{q}, Broker: broker})
	node := nodeName(w)

	conn, err := amqp.Dial(broker)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	bodies := []string{`not json`, `[1, 2]`, `{"arguments": {}}`, `{"method": "ping", "arguments": [1]}`,
		`{"method": "no_such_command", "arguments": {}}`,
		`{"method": "ping", "arguments": {}, "ticket": "t", "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": "nobody-listens"}}`}
	flood := make(chan error, 1)
	go func() {
		for i := 0; i < 3000; i++ {
			b := bodies[i%len(bodies)]
			if err := ch.Publish("celery.pidbox", "", false, false, amqp.Publishing{ContentType: "application/json", Body: []byte(b)}); err != nil {
				flood <- err
				return
			}
		}
		flood <- nil
	}()
	res := pyClient{Broker: broker}.run(t, `
rs = [send('tasks.add', (i, i), queue=`+pyString(q)+`) for i in range(50)]
emit(values=[r.get(timeout=TIMEOUT) for r in rs])
`)
	var values []int
	res.get(t, "values", &values)
	if len(values) != 50 || values[49] != 98 {
		t.Fatalf("tasks during the flood: %v", values)
	}
	if err := <-flood; err != nil {
		t.Fatalf("flood: %v", err)
	}
	stdout, stderr, code := runGworker(t, 60*time.Second, "inspect", "ping", "-b", broker, "-d", node, "--timeout", "10")
	if code != 0 || !strings.Contains(stdout, "pong") {
		t.Fatalf("ping after the flood: %d\n%s\n%s", code, stdout, stderr)
	}
	w.requireAlive()
	if n := w.countLog("ERROR", "pidbox command error: KeyError('no_such_command')"); n != 1 {
		t.Errorf("unknown command logged %d times at ERROR, want once", n)
	}
	for _, reason := range []string{`"reason": "json"`, `"reason": "not-an-object"`, `"reason": "method"`, `"reason": "arguments"`} {
		if n := w.countLog("WARNING", "ignoring a bad control message", reason); n != 1 {
			t.Errorf("%s logged %d times at WARNING, want once", reason, n)
		}
	}
}

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/gworker/gworker/internal/testing/testenv"
)

// The servers every test talks to. CI (the .ci/run script) guarantees they
// are up; a test run fails, and never skips, when they are not.
const (
	amqpHostPort  = "127.0.0.1:5672"
	redisAddr     = "127.0.0.1:6379"
	backendURL    = "redis://127.0.0.1:6379/0"
	defaultWait   = 30 * time.Second
	pythonTimeout = 20 // seconds a Python client waits for one result
)

// env is what TestMain prepares once for the whole run.
var env struct {
	vhost     string // private RabbitMQ virtual host of this run
	brokerURL string // amqp URL of the vhost, as guest
	binary    string // the gworker binary built for this run
	tmp       string
	rdb       *redis.Client
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if err := checkPrerequisites(); err != nil {
		fmt.Fprintln(os.Stderr, "integration: "+err.Error())
		return 1
	}
	tmp, err := os.MkdirTemp("", "gworker-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	env.tmp = tmp

	env.binary = filepath.Join(tmp, "gworker")
	// Built with the race detector, so that the cross-process tests also
	// catch data races in the worker; processes report them on stderr.
	build := exec.Command("go", "build", "-race", "-o", env.binary, "github.com/gworker/gworker/cmd/gworker")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "integration: building cmd/gworker failed:", err)
		return 1
	}

	env.vhost = "gw-" + testenv.Suffix()
	if out, err := rabbitmqctl("add_vhost", env.vhost); err != nil {
		fmt.Fprintf(os.Stderr, "integration: rabbitmqctl add_vhost: %v\n%s", err, out)
		return 1
	}
	defer func() {
		if out, err := rabbitmqctl("delete_vhost", env.vhost); err != nil {
			fmt.Fprintf(os.Stderr, "integration: rabbitmqctl delete_vhost %s: %v\n%s", env.vhost, err, out)
		}
	}()
	if out, err := rabbitmqctl("set_permissions", "-p", env.vhost, "guest", ".*", ".*", ".*"); err != nil {
		fmt.Fprintf(os.Stderr, "integration: rabbitmqctl set_permissions: %v\n%s", err, out)
		return 1
	}
	env.brokerURL = "amqp://guest:guest@" + amqpHostPort + "/" + env.vhost

	env.rdb = redis.NewClient(&redis.Options{Addr: redisAddr, DB: 0})
	defer env.rdb.Close()

	return m.Run()
}

// checkPrerequisites fails with a message that says how to fix the machine.
func checkPrerequisites() error {
	const fix = "run .ci/run, which installs and starts what the integration tests need"
	if out, err := exec.Command(testenv.Python(), "-c", "import celery, redis, msgpack").CombinedOutput(); err != nil {
		return fmt.Errorf("%s cannot import celery, redis and msgpack (%v: %s); %s",
			testenv.Python(), err, strings.TrimSpace(string(out)), fix)
	}
	for _, s := range []struct{ name, addr string }{{"RabbitMQ", amqpHostPort}, {"Redis", redisAddr}} {
		c, err := net.DialTimeout("tcp", s.addr, 3*time.Second)
		if err != nil {
			return fmt.Errorf("%s is not reachable at %s: %v; %s", s.name, s.addr, err, fix)
		}
		c.Close()
	}
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		return fmt.Errorf("rabbitmqctl is not on the PATH: %v; %s", err, fix)
	}
	return nil
}

func rabbitmqctl(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput()
}

// privateVhost creates a RabbitMQ virtual host for one test, for tests
// that act on every connection of a vhost; it is deleted when t ends. It
// returns the vhost's broker URL as guest.
func privateVhost(t testing.TB) (name, url string) {
	t.Helper()
	name = env.vhost + "-" + testenv.Suffix()
	if out, err := rabbitmqctl("add_vhost", name); err != nil {
		t.Fatalf("rabbitmqctl add_vhost: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = rabbitmqctl("delete_vhost", name) })
	if out, err := rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*"); err != nil {
		t.Fatalf("rabbitmqctl set_permissions: %v\n%s", err, out)
	}
	return name, "amqp://guest:guest@" + amqpHostPort + "/" + name
}

// uniqueQueue returns a queue name private to this test.
func uniqueQueue(t testing.TB, prefix string) string {
	t.Helper()
	return prefix + "-" + testenv.Suffix()
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ---------------------------------------------------------------------------
// Redis bookkeeping

// trackTasks deletes the result keys of ids when t ends.
func trackTasks(t testing.TB, ids ...string) {
	t.Helper()
	if len(ids) == 0 {
		return
	}
	keys := make([]string, 0, len(ids))
	for _, id := range ids {
		if id != "" {
			keys = append(keys, "celery-task-meta-"+id)
		}
	}
	t.Cleanup(func() { deleteKeys(keys) })
}

// trackGroups deletes the saved GroupResult and chord keys of gids when t
// ends.
func trackGroups(t testing.TB, gids ...string) {
	t.Helper()
	var keys []string
	for _, g := range gids {
		if g == "" {
			continue
		}
		base := "celery-taskset-meta-" + g
		keys = append(keys, base, base+".j", base+".t", base+".s")
	}
	t.Cleanup(func() { deleteKeys(keys) })
}

func deleteKeys(keys []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(keys) > 0 {
		n := min(len(keys), 500)
		_ = env.rdb.Del(ctx, keys[:n]...).Err()
		keys = keys[n:]
	}
}

// storedMeta is a result as a Python worker stores it in Redis.
type storedMeta struct {
	Status    string          `json:"status"`
	Result    json.RawMessage `json:"result"`
	Traceback *string         `json:"traceback"`
	TaskID    string          `json:"task_id"`
}

// excDict is the exception encoding of FAILURE results.
type excDict struct {
	Type    string          `json:"exc_type"`
	Message json.RawMessage `json:"exc_message"`
	Module  string          `json:"exc_module"`
}

// getMeta returns the stored result of id, or nil while there is none.
func getMeta(t testing.TB, id string) *storedMeta {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := env.rdb.Get(ctx, "celery-task-meta-"+id).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		t.Fatalf("redis GET result of %s: %v", id, err)
	}
	var m storedMeta
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("result of %s is not JSON: %v: %s", id, err, raw)
	}
	return &m
}

// waitMeta waits until id has a stored result in one of the given states.
func waitMeta(t testing.TB, id string, timeout time.Duration, states ...string) *storedMeta {
	t.Helper()
	var last *storedMeta
	ok := eventually(timeout, func() bool {
		last = getMeta(t, id)
		if last == nil {
			return false
		}
		for _, s := range states {
			if last.Status == s {
				return true
			}
		}
		return false
	})
	if !ok {
		if last == nil {
			t.Fatalf("task %s: no result stored within %v (want %v)", id, timeout, states)
		}
		t.Fatalf("task %s: state %s within %v, want %v", id, last.Status, timeout, states)
	}
	return last
}

// eventually polls cond every 50 ms until it holds or timeout passes.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// gworker processes

// workerOptions configure one gworker worker process.
type workerOptions struct {
	Queues      []string
	Concurrency int
	Prefetch    int    // --prefetch-multiplier; 0 keeps the default
	Broker      string // defaults to the run's vhost as guest
	Backend     string // defaults to Redis; "-" means no backend
	Name        string // -n; defaults to a unique go@... name
	// DefaultQueue is where the worker sends tasks that name no queue
	// (chain links, callbacks, chord bodies, tasks sent from tasks), like
	// task_default_queue; it defaults to the first queue, so that every
	// test keeps to its own queues.
	DefaultQueue string
	Extra        []string
	// Env adds variables to the worker's environment.
	Env []string
}

// gworkerProc is a running gworker worker.
type gworkerProc struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error // set when done is closed
	name   string
}

var taskIDInLog = regexp.MustCompile(`\[([0-9A-Za-z_.:-]{8,64})\] (?:received|succeeded|raised|retry)`)

// startWorker starts a gworker worker and waits until it logs "ready.".
// The process is killed, and its task ids' results deleted, when t ends.
func startWorker(t testing.TB, o workerOptions) *gworkerProc {
	t.Helper()
	if len(o.Queues) == 0 {
		t.Fatal("startWorker: no queue given")
	}
	if o.Concurrency == 0 {
		o.Concurrency = 2
	}
	if o.Broker == "" {
		o.Broker = env.brokerURL
	}
	if o.Backend == "" {
		o.Backend = backendURL
	}
	if o.Name == "" {
		o.Name = "go-" + testenv.Suffix() + "@%h"
	}
	if o.DefaultQueue == "" {
		o.DefaultQueue = o.Queues[0]
	}
	args := []string{"worker",
		"--broker", o.Broker,
		"-Q", strings.Join(o.Queues, ","),
		"-c", fmt.Sprint(o.Concurrency),
		"-n", o.Name,
		"-l", "INFO",
		"--default-queue", o.DefaultQueue,
	}
	if o.Backend != "-" {
		args = append(args, "--result-backend", o.Backend)
	}
	if o.Prefetch > 0 {
		args = append(args, "--prefetch-multiplier", fmt.Sprint(o.Prefetch))
	}
	args = append(args, o.Extra...)
	p := startProgramEnv(t, env.binary, o.Env, args...)
	p.name = o.Name
	if !p.waitLog("ready.", defaultWait) {
		t.Fatalf("gworker worker did not log \"ready.\" within %v\nstdout:\n%s\nstderr:\n%s",
			defaultWait, p.stdout.String(), p.stderr.String())
	}
	return p
}

// startGworker starts the gworker binary with args, in its own process
// group, with CELERY_* variables cleared.
func startGworker(t testing.TB, args ...string) *gworkerProc {
	t.Helper()
	return startProgram(t, env.binary, args...)
}

// startProgram starts a gworker-based program as startGworker does.
func startProgram(t testing.TB, binary string, args ...string) *gworkerProc {
	t.Helper()
	return startProgramEnv(t, binary, nil, args...)
}

// startProgramEnv is startProgram with more environment variables.
func startProgramEnv(t testing.TB, binary string, extraEnv []string, args ...string) *gworkerProc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(cleanEnv(), extraEnv...)
	ownGroup(cmd)
	p := &gworkerProc{t: t, cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start gworker: %v", err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if strings.Contains(p.stderr.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector found a data race in gworker %v", args)
		}
		if t.Failed() {
			t.Logf("gworker %v\nstdout:\n%s\nstderr:\n%s", args, p.stdout.String(), p.stderr.String())
		}
		trackTasksNow(p.taskIDs())
	})
	return p
}

// cleanEnv is the environment of child processes without CELERY_ settings
// that could point them at another broker.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CELERY_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func trackTasksNow(ids []string) {
	keys := make([]string, 0, len(ids))
	for _, id := range ids {
		keys = append(keys, "celery-task-meta-"+id)
	}
	deleteKeys(keys)
}

// log returns everything the process wrote to stderr so far.
func (p *gworkerProc) log() string { return p.stderr.String() }

// output returns stdout and stderr together.
func (p *gworkerProc) output() string { return p.stdout.String() + p.stderr.String() }

// waitLog waits until the log contains s. It gives up early when the
// process exits.
func (p *gworkerProc) waitLog(s string, timeout time.Duration) bool {
	exited := false
	found := eventually(timeout, func() bool {
		if strings.Contains(p.log(), s) {
			return true
		}
		select {
		case <-p.done:
			exited = true
			return true
		default:
			return false
		}
	})
	return found && (!exited || strings.Contains(p.log(), s))
}

// countLog counts the log lines that contain every one of parts.
func (p *gworkerProc) countLog(parts ...string) int {
	n := 0
	for _, line := range strings.Split(p.log(), "\n") {
		all := true
		for _, s := range parts {
			if !strings.Contains(line, s) {
				all = false
				break
			}
		}
		if all {
			n++
		}
	}
	return n
}

// taskIDs returns the ids the worker logged.
func (p *gworkerProc) taskIDs() []string {
	seen := map[string]bool{}
	var ids []string
	for _, m := range taskIDInLog.FindAllStringSubmatch(p.log(), -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			ids = append(ids, m[1])
		}
	}
	return ids
}

// alive reports whether the process is still running.
func (p *gworkerProc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// requireAlive fails the test when the worker has exited.
func (p *gworkerProc) requireAlive() {
	p.t.Helper()
	if !p.alive() {
		p.t.Fatalf("gworker exited (%v); log:\n%s", p.err, p.log())
	}
}

// signal sends sig to the worker process.
func (p *gworkerProc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && p.alive() {
		p.t.Fatalf("signal gworker: %v", err)
	}
}

// stop shuts the worker down warmly (SIGTERM) and waits for it to exit.
func (p *gworkerProc) stop(timeout time.Duration) error {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	return p.wait(timeout)
}

// wait waits for the process to exit and returns its exit error.
func (p *gworkerProc) wait(timeout time.Duration) error {
	p.t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.t.Fatalf("gworker did not exit within %v; log:\n%s", timeout, p.log())
		return nil
	}
}

// kill kills the whole process group and waits for the exit.
func (p *gworkerProc) kill() {
	if p.alive() {
		killGroup(p.cmd)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// runGworker runs a gworker command (call, result) to completion and
// returns its stdout, stderr and exit code.
func runGworker(t testing.TB, timeout time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runProgram(t, env.binary, timeout, args...)
}

// runProgram runs a command of a gworker-based binary as runGworker does.
func runProgram(t testing.TB, binary string, timeout time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = cleanEnv()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("gworker %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	if ctx.Err() != nil {
		t.Fatalf("gworker %v did not finish within %v\nstdout:\n%s\nstderr:\n%s", args, timeout, o.String(), e.String())
	}
	return o.String(), e.String(), code
}

// ---------------------------------------------------------------------------
// AMQP helpers (raw publishing and queue inspection from Go)

// amqpConn opens a connection to the run's vhost, closed when t ends.
func amqpConn(t testing.TB) *amqp.Connection {
	t.Helper()
	c, err := amqp.Dial(env.brokerURL)
	if err != nil {
		t.Fatalf("amqp dial %s: %v", env.vhost, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// queueReady returns the number of ready messages in q (passive declare).
func queueReady(t testing.TB, c *amqp.Connection, q string) int {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatalf("amqp channel: %v", err)
	}
	defer ch.Close()
	st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("inspect queue %s: %v", q, err)
	}
	return st.Messages
}

// queueCounts returns ready and unacknowledged counts from rabbitmqctl.
func queueCounts(t testing.TB, q string) (ready, unacked int) {
	t.Helper()
	return queueCountsIn(t, env.vhost, q)
}

// queueCountsIn is queueCounts for a queue in another vhost.
func queueCountsIn(t testing.TB, vhost, q string) (ready, unacked int) {
	t.Helper()
	out, err := rabbitmqctl("list_queues", "-p", vhost, "--quiet", "--no-table-headers",
		"name", "messages_ready", "messages_unacknowledged")
	if err != nil {
		t.Fatalf("rabbitmqctl list_queues: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == q {
			fmt.Sscan(f[1], &ready)
			fmt.Sscan(f[2], &unacked)
			return ready, unacked
		}
	}
	t.Fatalf("queue %s not listed by rabbitmqctl:\n%s", q, out)
	return 0, 0
}

// ---------------------------------------------------------------------------
// Python side

// pyPrelude sets up a Celery app from the environment and small helpers.
// Scripts call emit(key=value) to report observations; the Go side reads
// them from the last stdout line, which starts with "GWJSON:".
const pyPrelude = `
import json, os, sys, math, time
from celery import Celery
app = Celery('gwtest')
app.conf.update(broker_url=os.environ['GW_BROKER'], result_backend=os.environ['GW_BACKEND'])
# Publisher confirms: a script exits right after its last send, and
# RabbitMQ drops what a channel had not yet routed when its connection
# goes away unannounced (seen: one of two tasks never arrived).
app.conf.update(broker_transport_options={'confirm_publish': True})
app.conf.update((json.loads(os.environ.get('GW_CONF') or '{}') or {}))
TIMEOUT = float(os.environ.get('GW_TIMEOUT', '20'))
_OUT = {}
IDS = []
GROUPS = []

def emit(**kw):
    _OUT.update(kw)

def exc_info(e):
    return {"ok": False, "exc": type(e).__name__, "module": type(e).__module__,
            "args": [repr(a) for a in e.args], "repr": repr(e), "str": str(e)}

def describe(fn):
    try:
        v = fn()
    except BaseException as e:
        return exc_info(e)
    d = {"ok": True, "repr": repr(v), "type": type(v).__name__}
    try:
        json.dumps(v, allow_nan=False)
        d["value"] = v
    except (TypeError, ValueError):
        pass
    return d

def send(name, args=(), kwargs=None, **opts):
    r = app.send_task(name, args=args, kwargs=kwargs, **opts)
    IDS.append(r.id)
    return r

def call(name, args=(), kwargs=None, **opts):
    r = send(name, args, kwargs, **opts)
    return describe(lambda: r.get(timeout=TIMEOUT))

def track(res):
    """Records the ids of a result (and its parents / members) for cleanup."""
    seen = set()
    def walk(r):
        if r is None or id(r) in seen:
            return
        seen.add(id(r))
        if hasattr(r, 'results') and r.results is not None:
            if getattr(r, 'id', None):
                GROUPS.append(r.id)
            for c in r.results:
                walk(c)
        elif getattr(r, 'id', None):
            IDS.append(r.id)
        walk(getattr(r, 'parent', None))
    walk(res)
    return res
`

const pyEpilogue = `
print("GWJSON:" + json.dumps({"out": _OUT, "ids": IDS, "groups": GROUPS}))
`

// pyResult is what a Python script reported.
type pyResult struct {
	Out    map[string]json.RawMessage `json:"out"`
	IDs    []string                   `json:"ids"`
	Groups []string                   `json:"groups"`
}

// outcome is the description of a value or exception made by describe().
type outcome struct {
	OK     bool            `json:"ok"`
	Repr   string          `json:"repr"`
	Type   string          `json:"type"`
	Value  json.RawMessage `json:"value"`
	Exc    string          `json:"exc"`
	Module string          `json:"module"`
	Args   []string        `json:"args"`
	Str    string          `json:"str"`
}

func (o outcome) String() string {
	if o.OK {
		return fmt.Sprintf("%s (%s)", o.Repr, o.Type)
	}
	return fmt.Sprintf("raised %s.%s: %s", o.Module, o.Exc, o.Repr)
}

// pyClient configures the Celery app of a Python script.
type pyClient struct {
	Broker  string         // defaults to the run's vhost
	Backend string         // defaults to Redis
	Conf    map[string]any // extra Celery settings
	Env     []string       // extra environment (PYTHONPATH for Celery 5.5)
}

// run executes script with /usr/bin/python3 after the prelude and returns
// what it emitted. Task ids and group ids it reports are cleaned up when t
// ends. A script that fails fails the test.
func (c pyClient) run(t testing.TB, script string) pyResult {
	t.Helper()
	res, stderr, err := c.tryRun(t, script, 90*time.Second)
	if err != nil {
		t.Fatalf("python script failed: %v\nstderr:\n%s\nscript:\n%s", err, stderr, script)
	}
	return res
}

func (c pyClient) tryRun(t testing.TB, script string, timeout time.Duration) (pyResult, string, error) {
	t.Helper()
	if c.Broker == "" {
		c.Broker = env.brokerURL
	}
	if c.Backend == "" {
		c.Backend = backendURL
	}
	conf, err := json.Marshal(c.Conf)
	if err != nil {
		t.Fatalf("python conf: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Python(), "-c", pyPrelude+script+pyEpilogue)
	cmd.Env = append(cleanEnv(),
		"GW_BROKER="+c.Broker, "GW_BACKEND="+c.Backend, "GW_CONF="+string(conf),
		fmt.Sprintf("GW_TIMEOUT=%d", pythonTimeout), "PYTHONDONTWRITEBYTECODE=1")
	cmd.Env = append(cmd.Env, c.Env...)
	cmd.Dir = env.tmp
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	runErr := cmd.Run()
	var res pyResult
	for _, line := range strings.Split(o.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "GWJSON:"); ok {
			if err := json.Unmarshal([]byte(rest), &res); err != nil {
				t.Fatalf("python output: %v: %s", err, rest)
			}
		}
	}
	trackTasks(t, res.IDs...)
	trackGroups(t, res.Groups...)
	if ctx.Err() != nil {
		return res, e.String(), fmt.Errorf("timed out after %v", timeout)
	}
	if runErr != nil {
		return res, e.String() + o.String(), runErr
	}
	return res, e.String(), nil
}

// get decodes the emitted value key into v.
func (r pyResult) get(t testing.TB, key string, v any) {
	t.Helper()
	raw, ok := r.Out[key]
	if !ok {
		t.Fatalf("python did not emit %q (emitted: %v)", key, keys(r.Out))
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("python value %q: %v: %s", key, err, raw)
	}
}

// outcome returns the emitted outcome under key.
func (r pyResult) outcome(t testing.TB, key string) outcome {
	t.Helper()
	var o outcome
	r.get(t, key, &o)
	return o
}

func keys(m map[string]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// wantValue checks that o is a success with the given Python repr and type.
func wantValue(t testing.TB, what string, o outcome, repr, typ string) {
	t.Helper()
	if !o.OK || o.Repr != repr || (typ != "" && o.Type != typ) {
		t.Errorf("%s: got %s, want %s (%s)", what, o, repr, typ)
	}
}

// wantExc checks that o is an exception of the given class name.
func wantExc(t testing.TB, what string, o outcome, exc string) {
	t.Helper()
	if o.OK || o.Exc != exc {
		t.Errorf("%s: got %s, want exception %s", what, o, exc)
	}
}

// pyString quotes s as a Python string literal (JSON strings are valid
// Python literals).
func pyString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ---------------------------------------------------------------------------
// Python Celery workers

// pyTasksModule is the Celery app a Python worker runs: tasks that Go
// producers call by name.
const pyTasksModule = `
import json, os, time
from celery import Celery
app = Celery('pytasks')
app.conf.update(broker_url=os.environ['GW_BROKER'], result_backend=os.environ['GW_BACKEND'])
# Publisher confirms: a script exits right after its last send, and
# RabbitMQ drops what a channel had not yet routed when its connection
# goes away unannounced (seen: one of two tasks never arrived).
app.conf.update(broker_transport_options={'confirm_publish': True})
app.conf.update((json.loads(os.environ.get('GW_CONF') or '{}') or {}))

@app.task(name='tasks.pymul')
def pymul(x, y):
    return x * y

@app.task(name='tasks.pyadd')
def pyadd(x, y):
    return x + y

@app.task(name='tasks.pyecho')
def pyecho(value):
    return value

@app.task(name='tasks.pytype')
def pytype(value):
    return type(value).__name__

@app.task(name='tasks.pyfail')
def pyfail(message):
    raise ValueError(message, 42)

@app.task(name='tasks.pysum')
def pysum(numbers):
    return sum(numbers)

# Python twins of gworker demo tasks, for a pool of both kinds of worker
# on one queue.
@app.task(name='tasks.add')
def add(x, y):
    return x + y

@app.task(name='tasks.mul')
def mul(x, y):
    return x * y

@app.task(name='tasks.xsum')
def xsum(numbers):
    return sum(numbers)
`

// pyWorker is a running Python Celery worker.
type pyWorker struct {
	*gworkerProc
}

// startPyWorker starts `celery worker` (solo pool) on queues, with the
// settings in conf, and waits until it is ready.
// runPyWorker starts a Celery worker's command in its own process group,
// stops it (SIGTERM, then SIGKILL) when t ends, and waits until it logs
// "ready." within ready; label names it in failures.
func runPyWorker(t testing.TB, cmd *exec.Cmd, name, label string, ready time.Duration) *pyWorker {
	t.Helper()
	ownGroup(cmd)
	p := &gworkerProc{t: t, cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{}), name: name}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", label, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.alive() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(15 * time.Second):
			}
		}
		p.kill()
		if t.Failed() {
			t.Logf("%s\nstdout:\n%s\nstderr:\n%s", label, p.stdout.String(), p.stderr.String())
		}
		trackTasksNow(p.taskIDs())
	})
	if !p.waitLog(" ready.", ready) {
		t.Fatalf("%s did not log \"ready.\"\nstdout:\n%s\nstderr:\n%s", label, p.stdout.String(), p.stderr.String())
	}
	return &pyWorker{p}
}

func startPyWorker(t testing.TB, backend string, conf map[string]any, queues ...string) *pyWorker {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pytasks.py"), []byte(pyTasksModule), 0o644); err != nil {
		t.Fatal(err)
	}
	if backend == "" {
		backend = backendURL
	}
	confJSON, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	name := "py-" + testenv.Suffix() + "@%h"
	cmd := exec.Command(testenv.Python(), "-m", "celery", "-A", "pytasks", "worker",
		"-P", "solo", "-Q", strings.Join(queues, ","), "-n", name, "-l", "INFO",
		"--without-mingle", "--without-gossip", "--without-heartbeat")
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "GW_BROKER="+env.brokerURL, "GW_BACKEND="+backend,
		"GW_CONF="+string(confJSON), "PYTHONPATH="+dir, "PYTHONDONTWRITEBYTECODE=1")
	return runPyWorker(t, cmd, name, "celery worker", 60*time.Second)
}

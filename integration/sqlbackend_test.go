package integration

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/zap"

	"github.com/gworker/gworker"
	"github.com/gworker/gworker/canvas"
	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/sqlbackend"
)

// The SQL servers of the SQL result backend tests: PostgreSQL with trust
// auth and MariaDB with root and no password.
const (
	pgHostPort    = "127.0.0.1:5432"
	mysqlHostPort = "127.0.0.1:3306"
)

var sqlServers = []string{"postgresql", "mysql"}

// sqlDatabase creates a database on server for this test, dropped when
// it ends, and returns its name and a handle.
func sqlDatabase(t *testing.T, server string) (string, *sql.DB) {
	t.Helper()
	name := "gwi_" + strings.ReplaceAll(testenv.Suffix(), "-", "_")
	open := func(db string) *sql.DB {
		var h *sql.DB
		var err error
		if server == "postgresql" {
			h, err = sql.Open("pgx", "postgres://postgres@"+pgHostPort+"/"+db)
		} else {
			h, err = sql.Open("mysql", "root@tcp("+mysqlHostPort+")/"+db+"?parseTime=true&loc=UTC")
		}
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	admin := open(map[bool]string{true: "postgres", false: ""}[server == "postgresql"])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		t.Fatalf("create database on %s (is it running? .ci/run starts it): %v", server, err)
	}
	db := open(name)
	t.Cleanup(func() {
		db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		q := "DROP DATABASE " + name
		if server == "postgresql" {
			q += " WITH (FORCE)"
		}
		if _, err := admin.ExecContext(ctx, q); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
		admin.Close()
	})
	return name, db
}

// sqlURL is the result backend URL of database name, the same for Python
// (SQLAlchemy) and gworker.
func sqlURL(prefix, server, name string) string {
	if server == "postgresql" {
		return prefix + "+postgresql://postgres@" + pgHostPort + "/" + name
	}
	return prefix + "+mysql+pymysql://root@" + mysqlHostPort + "/" + name
}

// sqlClientScript sends values, a KeyError, a group, a saved group and
// chords, and reports what .get() gives.
const sqlClientScript = `
from celery import group, chord, signature
from celery.result import GroupResult
emit(add=call('tasks.add', (2, 2)))
emit(big=call('tasks.echo', (2**70,)))
emit(val=call('tasks.echo', ({'a': [1, 2.5, None, True, 'x']},)))
emit(keyerr=call('tasks.raise_error', ('missing',)))
g = group(signature('tasks.add', (i, i)) for i in range(5))
gr = track(g.apply_async())
emit(group=describe(lambda: gr.get(timeout=TIMEOUT)))
gr.save()
emit(restored=describe(lambda: GroupResult.restore(gr.id).get(timeout=TIMEOUT)))
emit(saved_id=gr.id)
cr = track(chord([signature('tasks.add', (i, i)) for i in range(4)], signature('tasks.xsum')).apply_async())
emit(chord=describe(lambda: cr.get(timeout=TIMEOUT)))
cf = track(chord([signature('tasks.add', (1, 1)), signature('tasks.raise_error', ('bad',))], signature('tasks.xsum')).apply_async())
emit(chordfail=describe(lambda: cf.get(timeout=TIMEOUT)))
body = app.AsyncResult(cf.id)
emit(chordbody=describe(lambda: body.get(timeout=TIMEOUT, propagate=False)))
r = send('tasks.sleep', (1,))
deadline = time.time() + TIMEOUT
while r.state == 'PENDING' and time.time() < deadline:
    time.sleep(0.02)
emit(started=r.state)
r.get(timeout=TIMEOUT)
fl = send('tasks.flaky', (10,))
seen = set()
deadline = time.time() + TIMEOUT
while not fl.ready() and time.time() < deadline:
    seen.add(fl.state)
    time.sleep(0.01)
emit(flaky=describe(lambda: fl.get(timeout=TIMEOUT)), flaky_states=sorted(seen))
rv = send('tasks.add', (1, 1), countdown=3)
rv.revoke()
emit(revoked=describe(lambda: rv.get(timeout=TIMEOUT)), revoked_state=rv.state)
x = send('tasks.add', (3, 4))
x.get(timeout=TIMEOUT)
emit(extended=describe(lambda: [x.name, x.args, x.kwargs, x.queue, x.result]))
emit(add_id=x.id)
`

func checkSQLClient(t *testing.T, r pyResult, extended string) {
	t.Helper()
	wantValue(t, "add(2, 2)", r.outcome(t, "add"), "4", "int")
	wantValue(t, "echo(2**70)", r.outcome(t, "big"), "1180591620717411303424", "int")
	wantValue(t, "echo(dict)", r.outcome(t, "val"), "{'a': [1, 2.5, None, True, 'x']}", "dict")
	if o := r.outcome(t, "keyerr"); o.OK || o.Exc != "KeyError" || o.Repr != "KeyError('missing')" {
		t.Errorf("raise_error: %s", o)
	}
	wantValue(t, "group", r.outcome(t, "group"), "[0, 2, 4, 6, 8]", "list")
	wantValue(t, "restored group", r.outcome(t, "restored"), "[0, 2, 4, 6, 8]", "list")
	wantValue(t, "chord", r.outcome(t, "chord"), "12", "int")
	// get() raises the failed header part's error when its check of the
	// parents (every polling interval) sees it before the body's
	// ChordError, as in Celery; the body itself holds ChordError.
	if o := r.outcome(t, "chordfail"); o.OK || (o.Exc != "KeyError" && o.Exc != "ChordError") {
		t.Errorf("chord with a failing part: %s", o)
	}
	if o := r.outcome(t, "chordbody"); !o.OK || !strings.HasPrefix(o.Repr, "ChordError(") {
		t.Errorf("body of a chord with a failing part: %s", o)
	}
	wantValue(t, "flaky(10)", r.outcome(t, "flaky"), "10", "int")
	var states []string
	r.get(t, "flaky_states", &states)
	if !slices.Contains(states, "RETRY") {
		t.Errorf("states seen while tasks.flaky retried: %v, want RETRY among them", states)
	}
	var revoked string
	r.get(t, "revoked_state", &revoked)
	if o := r.outcome(t, "revoked"); o.OK || o.Exc != "TaskRevokedError" || revoked != "REVOKED" {
		t.Errorf("revoked task: %s, state %s", o, revoked)
	}
	var started string
	r.get(t, "started", &started)
	if started != "STARTED" {
		t.Errorf("state of a running task with --track-started: %s", started)
	}
	wantValue(t, "extended", r.outcome(t, "extended"), extended, "list")
}

// TestSQLBackendCeleryTables: Celery 5.2.6 clients with db+postgresql://
// and db+mysql+pymysql:// send to gworker and get values, exceptions,
// groups (saved and restored) and chords (through celery.chord_unlock)
// from the tables gworker created; Go reads Python's saved group and
// gworker result reads the rows.
func TestSQLBackendCeleryTables(t *testing.T) {
	for _, server := range sqlServers {
		t.Run(server, func(t *testing.T) {
			t.Parallel()
			name, _ := sqlDatabase(t, server)
			url := sqlURL("db", server, name)
			q := uniqueQueue(t, "sqlcel")
			startWorker(t, workerOptions{Queues: []string{q}, Backend: url, Concurrency: 4,
				Extra: []string{"--track-started", "--result-extended"}})
			r := pyClient{Backend: url, Conf: map[string]any{"task_default_queue": q, "result_extended": true}}.run(t, sqlClientScript)
			checkSQLClient(t, r, fmt.Sprintf("['tasks.add', [3, 4], {}, '%s', 7]", q))

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			b, err := sqlbackend.Open(sqlbackend.Config{URL: url})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			var gid, id string
			r.get(t, "saved_id", &gid)
			r.get(t, "add_id", &id)
			g, err := result.RestoreGroup(ctx, b, gid)
			if err != nil {
				t.Fatalf("Go restores the group Python saved: %v", err)
			}
			vals, err := g.Join(ctx)
			if err != nil || fmt.Sprint(vals) != "[0 2 4 6 8]" {
				t.Fatalf("Join of Python's saved group: %v %v", vals, err)
			}
			out, err := exec.Command(env.binary, "result", "--result-backend", url, id).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "7" {
				t.Fatalf("gworker result %s: %v: %s", id, err, out)
			}
		})
	}
}

// celeryRow is a celery_taskmeta row, for comparison.
type celeryRow struct {
	Status, Name, Worker, Queue, Traceback sql.NullString
	Result, Args, Kwargs                   []byte
	DateDone                               sql.NullTime
	Retries                                sql.NullInt64
}

func readCeleryRow(t *testing.T, db *sql.DB, server, id string) celeryRow {
	t.Helper()
	q := "SELECT status, result, date_done, traceback, name, args, kwargs, worker, retries, queue FROM celery_taskmeta WHERE task_id = ?"
	if server == "postgresql" {
		q = strings.Replace(q, "?", "$1", 1)
	}
	var r celeryRow
	if err := db.QueryRow(q, id).Scan(&r.Status, &r.Result, &r.DateDone, &r.Traceback, &r.Name, &r.Args, &r.Kwargs, &r.Worker, &r.Retries, &r.Queue); err != nil {
		t.Fatalf("row of %s: %v", id, err)
	}
	return r
}

// TestSQLBackendRowsLikeCelery: the same tasks run by Celery's own worker
// and by gworker leave the same celery_taskmeta rows, column by column
// (the worker's name and the queue are each worker's own).
func TestSQLBackendRowsLikeCelery(t *testing.T) {
	for _, server := range sqlServers {
		t.Run(server, func(t *testing.T) {
			t.Parallel()
			name, db := sqlDatabase(t, server)
			url := sqlURL("db", server, name)
			qgo, qpy := uniqueQueue(t, "sqlgo"), uniqueQueue(t, "sqlpy")
			conf := map[string]any{"result_extended": true, "task_track_started": true}
			gw := startWorker(t, workerOptions{Queues: []string{qgo}, Backend: url, Extra: []string{"--track-started", "--result-extended"}})
			py := startPyWorker(t, url, conf, qpy)
			r := pyClient{Backend: url, Conf: conf}.run(t, `
ids = {}
for q in (`+pyQuote(qgo)+`, `+pyQuote(qpy)+`):
    a = send('tasks.add', (2, 3), queue=q)
    a.get(timeout=TIMEOUT)
    m = send('tasks.mul', (2**40, 2**40), queue=q, kwargs={})
    m.get(timeout=TIMEOUT)
    ids[q] = [a.id, m.id]
emit(ids=ids)
`)
			var ids map[string][]string
			r.get(t, "ids", &ids)
			for i := range 2 {
				g, p := readCeleryRow(t, db, server, ids[qgo][i]), readCeleryRow(t, db, server, ids[qpy][i])
				if g.Status != p.Status || !bytes.Equal(g.Result, p.Result) || g.Traceback != p.Traceback || g.Name != p.Name ||
					!bytes.Equal(g.Args, p.Args) || !bytes.Equal(g.Kwargs, p.Kwargs) || g.Retries != p.Retries ||
					!g.DateDone.Valid || !p.DateDone.Valid {
					t.Errorf("task %d rows differ:\n gworker %+v\n celery  %+v", i, g, p)
				}
				if g.Queue.String != qgo || p.Queue.String != qpy {
					t.Errorf("queues: gworker %q, celery %q", g.Queue.String, p.Queue.String)
				}
				if !strings.HasPrefix(g.Worker.String, strings.TrimSuffix(gw.name, "%h")) || !strings.HasPrefix(p.Worker.String, strings.TrimSuffix(py.name, "%h")) {
					t.Errorf("workers: gworker %q, celery %q", g.Worker.String, p.Worker.String)
				}
			}
		})
	}
}

func pyQuote(s string) string { return testenv.PyQuote(s) }

// djangoProject is a Django project with django-celery-results: settings
// from DJ_* variables, and the Celery app (result_backend = 'django-db')
// and the Python twins of gworker's demo tasks in djtasks.
const djangoSettingsPy = `import os
SECRET_KEY = 'test'
INSTALLED_APPS = ['django_celery_results']
ENGINE = os.environ['DJ_ENGINE']
if ENGINE == 'mysql':
    import pymysql
    pymysql.install_as_MySQLdb()
DATABASES = {'default': {'ENGINE': 'django.db.backends.' + ENGINE, 'NAME': os.environ['DJ_NAME'],
    'HOST': os.environ['DJ_HOST'], 'PORT': os.environ['DJ_PORT'], 'USER': os.environ['DJ_USER'], 'PASSWORD': ''}}
USE_TZ = True
TIME_ZONE = 'UTC'
DEFAULT_AUTO_FIELD = 'django.db.models.AutoField'
`

const djangoTasksPy = `import json, os
import django
django.setup()
from celery import Celery
app = Celery('djtasks')
app.conf.update(broker_url=os.environ['GW_BROKER'], result_backend='django-db')
app.conf.update(broker_transport_options={'confirm_publish': True})
app.conf.update((json.loads(os.environ.get('GW_CONF') or '{}') or {}))

@app.task(name='tasks.add')
def add(x, y):
    return x + y

@app.task(name='tasks.raise_error')
def raise_error(message='boom'):
    raise KeyError(message)
`

// djangoEnv writes the project to a directory and returns it with the
// environment that points it at database name.
func djangoEnv(t *testing.T, server, name string) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	for f, body := range map[string]string{"gwsettings.py": djangoSettingsPy, "djtasks.py": djangoTasksPy} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hp, engine, user := pgHostPort, "postgresql", "postgres"
	if server == "mysql" {
		hp, engine, user = mysqlHostPort, "mysql", "root"
	}
	host, port, _ := strings.Cut(hp, ":")
	return dir, []string{"DJANGO_SETTINGS_MODULE=gwsettings", "PYTHONPATH=" + dir, "PYTHONDONTWRITEBYTECODE=1",
		"DJ_ENGINE=" + engine, "DJ_NAME=" + name, "DJ_HOST=" + host, "DJ_PORT=" + port, "DJ_USER=" + user}
}

// TestSQLBackendDjango: a Django project with django-celery-results,
// migrated by manage.py migrate, sends to gworker with result_backend =
// 'django-db' and gets values, exceptions, groups and chords (counted in
// ChordCounter); the TaskResult rows gworker and Celery's own worker
// write for the same tasks match column by column.
func TestSQLBackendDjango(t *testing.T) {
	for _, server := range sqlServers {
		t.Run(server, func(t *testing.T) {
			t.Parallel()
			name, db := sqlDatabase(t, server)
			dir, djEnv := djangoEnv(t, server, name)
			migrate := exec.Command(testenv.Python(), "-m", "django", "migrate", "-v0")
			migrate.Dir, migrate.Env = dir, append(cleanEnv(), djEnv...)
			if out, err := migrate.CombinedOutput(); err != nil {
				t.Fatalf("manage.py migrate: %v\n%s", err, out)
			}
			url := sqlURL("django-db", server, name)
			qgo, qpy := uniqueQueue(t, "djgo"), uniqueQueue(t, "djpy")
			startWorker(t, workerOptions{Queues: []string{qgo}, Backend: url, Concurrency: 4,
				Extra: []string{"--track-started", "--result-extended"}})
			conf := map[string]any{"task_default_queue": qgo, "result_extended": true, "task_track_started": true}
			startDjangoWorker(t, dir, djEnv, conf, qpy)

			script := `
from djtasks import app as djapp
app = djapp
` + sqlClientScript + `
ids = {}
for q in (` + pyQuote(qgo) + `, ` + pyQuote(qpy) + `):
    a = send('tasks.add', (2, 3), queue=q)
    a.get(timeout=TIMEOUT)
    f = send('tasks.raise_error', ('gone',), queue=q)
    describe(lambda: f.get(timeout=TIMEOUT))
    ids[q] = [a.id, f.id]
emit(ids=ids)
`
			cmd := exec.Command(testenv.Python(), "-c", pyPrelude+script+pyEpilogue)
			confJSON, _ := json.Marshal(conf)
			cmd.Dir = dir
			cmd.Env = append(append(cleanEnv(), djEnv...), "GW_BROKER="+env.brokerURL, "GW_BACKEND=django-db",
				"GW_CONF="+string(confJSON), fmt.Sprintf("GW_TIMEOUT=%d", pythonTimeout))
			var o, e bytes.Buffer
			cmd.Stdout, cmd.Stderr = &o, &e
			if err := cmd.Run(); err != nil {
				t.Fatalf("django client: %v\n%s\n%s", err, e.String(), o.String())
			}
			var r pyResult
			for _, line := range strings.Split(o.String(), "\n") {
				if rest, ok := strings.CutPrefix(line, "GWJSON:"); ok {
					if err := json.Unmarshal([]byte(rest), &r); err != nil {
						t.Fatal(err)
					}
				}
			}
			// django-celery-results reads task_name back under another
			// key, and the args as their repr text.
			checkSQLClient(t, r, "[None, '(3, 4)', '{}', None, 7]")

			var ids map[string][]string
			r.get(t, "ids", &ids)
			cols := "status, content_type, content_encoding, result, traceback, meta, task_args, task_kwargs, task_name, periodic_task_name"
			for i := range 2 {
				rows := make([][]sql.NullString, 2)
				for j, q := range []string{qgo, qpy} {
					query := "SELECT " + cols + " FROM django_celery_results_taskresult WHERE task_id = ?"
					if server == "postgresql" {
						query = strings.Replace(query, "?", "$1", 1)
					}
					vals := make([]sql.NullString, 10)
					ptrs := make([]any, 10)
					for k := range vals {
						ptrs[k] = &vals[k]
					}
					if err := db.QueryRow(query, ids[q][i]).Scan(ptrs...); err != nil {
						t.Fatalf("row %s: %v", ids[q][i], err)
					}
					rows[j] = vals
				}
				names := strings.Split(cols, ", ")
				for k, n := range names {
					g, p := rows[0][k], rows[1][k]
					if n == "traceback" {
						// Both hold a traceback; the frames are each
						// worker's own.
						if g.Valid != p.Valid || (g.Valid && !strings.Contains(g.String, "KeyError")) {
							t.Errorf("task %d traceback: gworker %q, celery %q", i, g.String, p.String)
						}
						continue
					}
					if g != p {
						t.Errorf("task %d column %s: gworker %q, celery %q", i, n, g.String, p.String)
					}
				}
			}
		})
	}
}

// startDjangoWorker starts Celery's own worker in the Django project.
func startDjangoWorker(t *testing.T, dir string, djEnv []string, conf map[string]any, queues ...string) {
	t.Helper()
	confJSON, _ := json.Marshal(conf)
	cmd := exec.Command(testenv.Python(), "-m", "celery", "-A", "djtasks", "worker", "-P", "solo", "-Q", strings.Join(queues, ","),
		"-n", "dj-"+testenv.Suffix()+"@%h", "-l", "INFO", "--without-mingle", "--without-gossip", "--without-heartbeat")
	cmd.Dir = dir
	cmd.Env = append(append(cleanEnv(), djEnv...), "GW_BROKER="+env.brokerURL, "GW_CONF="+string(confJSON))
	ownGroup(cmd)
	p := &gworkerProc{t: t, cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("django celery worker:\n%s", p.stderr.String())
		}
	})
	if !p.waitLog(" ready.", 60*time.Second) {
		t.Fatalf("django celery worker did not start:\n%s", p.stderr.String())
	}
}

// TestSQLBackendGoChord: a Go client on Celery's database tables applies
// chords as Celery does on them (celery.chord_unlock polls the header),
// gworker completes them, and the client reads the body's result, or
// the failure of a header task.
func TestSQLBackendGoChord(t *testing.T) {
	for _, server := range sqlServers {
		t.Run(server, func(t *testing.T) {
			t.Parallel()
			name, _ := sqlDatabase(t, server)
			url := sqlURL("db", server, name)
			q := uniqueQueue(t, "sqlgochord")
			startWorker(t, workerOptions{Queues: []string{q}, Backend: url, Concurrency: 4})
			app, err := gworker.NewApp(gworker.Config{BrokerURL: env.brokerURL, ResultBackend: url, DefaultQueue: q, Logger: zap.NewNop()},
				gworker.WithResultBackend(sqlbackend.Register))
			if err != nil {
				t.Fatal(err)
			}
			defer app.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			p, err := app.Producer(ctx)
			if err != nil {
				t.Fatal(err)
			}
			header := []*canvas.Signature{canvas.Sig("tasks.add", 1, 1), canvas.Sig("tasks.add", 2, 2), canvas.Sig("tasks.add", 3, 3)}
			res, err := canvas.Chord(header, canvas.Sig("tasks.xsum")).ApplyAsync(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			v, err := res.Get(ctx, result.WithTimeout(30*time.Second))
			if err != nil || v != int64(12) {
				t.Fatalf("chord body = %v, %v; want 12", v, err)
			}
			bad := []*canvas.Signature{canvas.Sig("tasks.add", 1, 1), canvas.Sig("tasks.raise_error", "no")}
			res, err = canvas.Chord(bad, canvas.Sig("tasks.xsum")).ApplyAsync(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			_, err = res.Get(ctx, result.WithTimeout(30*time.Second))
			// The failed part if Get saw it first among the parents, else
			// the body's ChordError.
			var exc *protocol.Exception
			if !errors.As(err, &exc) || (exc.Type != "KeyError" && exc.Type != "ChordError") {
				t.Fatalf("chord with a failing part: %v, want KeyError or ChordError", err)
			}
			// The body itself (waited for without its parents) holds
			// ChordError.
			v, err = result.NewAsyncResult(res.ID(), res.Backend()).Get(ctx, result.WithTimeout(30*time.Second), result.WithPropagate(false))
			te, ok := v.(*result.TaskError)
			if err != nil || !ok || te.Exception == nil || te.Exception.Type != "ChordError" {
				t.Fatalf("body of the failed chord: %v, %v; want ChordError", v, err)
			}

			// celery.backend_cleanup, as celery beat sends it, makes the
			// worker delete results older than result_expires (a day).
			b := res.Backend()
			old := testenv.UUID()
			twoDays := time.Now().Add(-48 * time.Hour)
			if err := b.Store(ctx, &result.Meta{TaskID: old, Status: result.Success, Result: "old", DateDone: &twoDays}); err != nil {
				t.Fatal(err)
			}
			if _, err := app.SendTask(ctx, "celery.backend_cleanup", nil, nil); err != nil {
				t.Fatal(err)
			}
			gone := eventually(30*time.Second, func() bool {
				m, err := b.Get(ctx, old)
				return err == nil && m.Status == result.Pending
			})
			if !gone {
				t.Fatal("celery.backend_cleanup did not delete the expired result")
			}
			if m, err := b.Get(ctx, res.ID()); err != nil || m.Status != result.Failure {
				t.Fatalf("a fresh result after the cleanup: %+v, %v", m, err)
			}
		})
	}
}

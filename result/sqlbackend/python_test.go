package sqlbackend_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/sqlbackend"
)

// pyStates reads the results of ids with Celery 5.2.6 (AsyncResult.state,
// .result, .traceback) and returns one line per id: state, repr of the
// result, whether a traceback is there.
const pyStates = `
import json, os, sys
if os.environ.get('DJANGO_SETTINGS_MODULE'):
    import django
    django.setup()
from celery import Celery
app = Celery('reader', broker='memory://', backend=os.environ['GW_BACKEND'])
app.conf.result_extended = True
out = {}
for id in sys.argv[1:]:
    r = app.AsyncResult(id)
    out[id] = [r.state, repr(r.result), bool(r.traceback)]
print(json.dumps(out))
`

func pythonStates(t *testing.T, backendURL string, extraEnv []string, ids ...string) map[string][]any {
	t.Helper()
	cmd := exec.Command(testenv.Python(), append([]string{"-c", pyStates}, ids...)...)
	cmd.Env = append(append(os.Environ(), "GW_BACKEND="+backendURL), extraEnv...)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("python: %v\n%s", err, stderr)
	}
	var got map[string][]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("python printed %s: %v", out, err)
	}
	return got
}

// everyState stores one task in each state Celery writes and returns the
// ids with what Python must read.
func everyState(t *testing.T, b result.Backend, tracebacks bool) (ids []string, want map[string][]any) {
	t.Helper()
	ctx := testCtx(t)
	tb := "Traceback (most recent call last):\nKeyError: 'x'\n"
	metas := []struct {
		m    *result.Meta
		want []any
	}{
		{&result.Meta{Status: result.Started, Result: protocol.Dict{{Key: "pid", Value: int64(7)}, {Key: "hostname", Value: "go@h"}}},
			[]any{"STARTED", "{'pid': 7, 'hostname': 'go@h'}", false}},
		{&result.Meta{Status: result.Retry, Result: &protocol.Exception{Type: "Retry", Module: "celery.exceptions", Args: []any{"Retry in 1s"}}, Traceback: tb},
			// Celery's Retry(message) puts itself first in its args.
			[]any{"RETRY", "Retry(Retry(...), None, None)", tracebacks}},
		{&result.Meta{Status: result.Failure, Result: protocol.NewException("KeyError", "x"), Traceback: tb, DateDone: done()},
			[]any{"FAILURE", "KeyError('x')", tracebacks}},
		{&result.Meta{Status: result.Revoked, Result: &protocol.Exception{Type: "TaskRevokedError", Module: "celery.exceptions", Args: []any{"revoked"}}, DateDone: done()},
			[]any{"REVOKED", "TaskRevokedError('revoked')", false}},
		{&result.Meta{Status: result.Success, Result: []any{int64(1), "a", 2.5, nil, map[string]any{"k": true}}, DateDone: done()},
			[]any{"SUCCESS", "[1, 'a', 2.5, None, {'k': True}]", false}},
	}
	want = map[string][]any{}
	for _, x := range metas {
		x.m.TaskID = testenv.UUID()
		x.m.Extended, x.m.Name, x.m.Worker = true, "tasks.add", "go@h"
		if err := b.Store(ctx, x.m); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, x.m.TaskID)
		want[x.m.TaskID] = x.want
	}
	pending := testenv.UUID()
	ids = append(ids, pending)
	want[pending] = []any{"PENDING", "None", false}
	return ids, want
}

func checkStates(t *testing.T, got, want map[string][]any) {
	t.Helper()
	for id, w := range want {
		g := got[id]
		if len(g) != 3 || g[0] != w[0] || g[1] != w[1] || g[2] != w[2] {
			t.Errorf("Python reads %v, want %v", g, w)
		}
	}
}

// TestPythonReadsEveryState: Celery's DatabaseBackend reads each state
// gworker writes to its tables as it reads its own.
func TestPythonReadsEveryState(t *testing.T) {
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			b, name := openCelery(t, s, sqlbackend.Config{})
			ids, want := everyState(t, b, true)
			checkStates(t, pythonStates(t, s.url("db", name), nil, ids...), want)
		})
	}
}

// TestDjangoPythonReadsEveryState: django-celery-results reads each state
// gworker writes to its tables.
func TestDjangoPythonReadsEveryState(t *testing.T) {
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			name, _ := s.newDatabase(t)
			migrate(t, s, name)
			b, err := sqlbackend.OpenDjango(sqlbackend.Config{URL: s.url("django-db", name)})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			ids, want := everyState(t, b, true)
			checkStates(t, pythonStates(t, "django-db", djangoEnv(t, s, name), ids...), want)
		})
	}
}

// TestTablesLikeCreateAll: the tables and sequences gworker creates are
// those SQLAlchemy's create_all creates for Celery's models: the same
// columns, types, lengths, nullability, defaults, keys and sequences.
func TestTablesLikeCreateAll(t *testing.T) {
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			pyName, pyDB := s.newDatabase(t)
			goName, goDB := s.newDatabase(t)
			sa := strings.TrimPrefix(s.url("db", pyName), "db+")
			script := `import sys, sqlalchemy
from celery.backends.database.session import ResultModelBase
from celery.backends.database import models
ResultModelBase.metadata.create_all(sqlalchemy.create_engine(sys.argv[1]))`
			if out, err := exec.Command(testenv.Python(), "-c", script, sa).CombinedOutput(); err != nil {
				t.Fatalf("create_all: %v\n%s", err, out)
			}
			b, err := sqlbackend.Open(sqlbackend.Config{URL: s.url("db", goName)})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if _, err := b.DB(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			describe := func(name string, db *sql.DB) []string {
				cols := `SELECT table_name, column_name, data_type, coalesce(character_maximum_length, 0), is_nullable, coalesce(column_default, '')
					FROM information_schema.columns WHERE table_schema = %s ORDER BY table_name, ordinal_position`
				cons := `SELECT tc.table_name, tc.constraint_type, kcu.column_name FROM information_schema.table_constraints tc
					JOIN information_schema.key_column_usage kcu ON tc.constraint_name = kcu.constraint_name AND tc.table_name = kcu.table_name AND tc.table_schema = kcu.table_schema
					WHERE tc.table_schema = %s ORDER BY 1, 2, 3`
				seqs := `SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_type = 'SEQUENCE' ORDER BY 1`
				where := "DATABASE()"
				if s.name == "postgresql" {
					where = "'public'"
					seqs = `SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = %s ORDER BY 1`
				}
				var out []string
				for _, q := range []string{cols, cons, seqs} {
					rows, err := db.Query(strings.ReplaceAll(q, "%s", where))
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					colTypes, _ := rows.Columns()
					for rows.Next() {
						vals := make([]any, len(colTypes))
						ptrs := make([]any, len(vals))
						for i := range vals {
							ptrs[i] = &vals[i]
						}
						if err := rows.Scan(ptrs...); err != nil {
							t.Fatal(err)
						}
						line := ""
						for _, v := range vals {
							if b, ok := v.([]byte); ok {
								v = string(b)
							}
							line += " " + strings.TrimSpace(strings.ReplaceAll(fmt.Sprint(v), "\n", " "))
						}
						out = append(out, line)
					}
					rows.Close()
				}
				return out
			}
			py, gw := describe("create_all", pyDB), describe("gworker", goDB)
			if strings.Join(py, "\n") != strings.Join(gw, "\n") {
				t.Fatalf("tables differ:\ncreate_all:\n%s\ngworker:\n%s", strings.Join(py, "\n"), strings.Join(gw, "\n"))
			}
			if len(py) < 17 {
				t.Fatalf("too little compared: %v", py)
			}
		})
	}
}

// TestPythonRestoresGoGroups: a group gworker saves is restored by
// Celery's GroupResult.restore and joined, on both layouts.
func TestPythonRestoresGoGroups(t *testing.T) {
	script := `import os, sys
if os.environ.get('DJANGO_SETTINGS_MODULE'):
    import django
    django.setup()
from celery import Celery
app = Celery('reader', broker='memory://', backend=os.environ['GW_BACKEND'])
g = app.GroupResult.restore(sys.argv[1])
print(repr([type(g).__name__, g.id, [r.id for r in g.results], g.join(timeout=10)]))
`
	for _, layout := range []string{"db", "django-db"} {
		for _, s := range servers {
			t.Run(layout+"/"+s.name, func(t *testing.T) {
				name, _ := s.newDatabase(t)
				var b interface {
					result.Backend
					result.GroupStore
				}
				backendURL, env := s.url(layout, name), []string(nil)
				if layout == "db" {
					cb, err := sqlbackend.Open(sqlbackend.Config{URL: backendURL})
					if err != nil {
						t.Fatal(err)
					}
					defer cb.Close()
					b = cb
				} else {
					migrate(t, s, name)
					db, err := sqlbackend.OpenDjango(sqlbackend.Config{URL: backendURL})
					if err != nil {
						t.Fatal(err)
					}
					defer db.Close()
					b = db
					backendURL, env = "django-db", djangoEnv(t, s, name)
				}
				ctx := testCtx(t)
				gid, a, c := testenv.UUID(), testenv.UUID(), testenv.UUID()
				for i, id := range []string{a, c} {
					if err := b.Store(ctx, success(id, int64(i+1))); err != nil {
						t.Fatal(err)
					}
				}
				if err := result.NewGroupResult(gid, b, result.NewAsyncResult(a, b), result.NewAsyncResult(c, b)).Save(ctx); err != nil {
					t.Fatal(err)
				}
				cmd := exec.Command(testenv.Python(), "-c", script, gid)
				cmd.Env = append(append(os.Environ(), "GW_BACKEND="+backendURL), env...)
				out, err := cmd.CombinedOutput()
				want := "['GroupResult', '" + gid + "', ['" + a + "', '" + c + "'], [1, 2]]"
				if err != nil || strings.TrimSpace(string(out)) != want {
					t.Fatalf("python restore: %v\n%s\nwant %s", err, out, want)
				}
			})
		}
	}
}

// djangoEnv writes the Django settings and returns the environment that
// points them at database name.
func djangoEnv(t *testing.T, s server, name string) []string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gwsettings.py"), []byte(djangoSettings), 0o644); err != nil {
		t.Fatal(err)
	}
	host, engine, user := pgHost(), "postgresql", "postgres"
	if s.name == "mysql" {
		host, engine, user = mysqlHost(), "mysql", "root"
	}
	h, p, _ := strings.Cut(host, ":")
	return []string{"DJANGO_SETTINGS_MODULE=gwsettings", "PYTHONPATH=" + dir,
		"DJ_ENGINE=" + engine, "DJ_NAME=" + name, "DJ_HOST=" + h, "DJ_PORT=" + p, "DJ_USER=" + user}
}

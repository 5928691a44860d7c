package sqlbackend_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/sqlbackend"
)

// djangoSettings is a minimal Django project with django-celery-results,
// its database from the environment.
const djangoSettings = `import os
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

// migrate runs Django's migrate for django_celery_results on database
// name of s.
func migrate(t *testing.T, s server, name string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gwsettings.py"), []byte(djangoSettings), 0o644); err != nil {
		t.Fatal(err)
	}
	host, port, engine, user := pgHost(), "", "postgresql", "postgres"
	if s.name == "mysql" {
		host, engine, user = mysqlHost(), "mysql", "root"
	}
	h, p, _ := cutHostPort(host)
	host, port = h, p
	cmd := exec.Command(testenv.Python(), "-m", "django", "migrate", "-v0", "django_celery_results")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DJANGO_SETTINGS_MODULE=gwsettings", "PYTHONPATH="+dir,
		"DJ_ENGINE="+engine, "DJ_NAME="+name, "DJ_HOST="+host, "DJ_PORT="+port, "DJ_USER="+user)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("manage.py migrate: %v\n%s", err, out)
	}
}

func cutHostPort(hp string) (string, string, bool) {
	for i := len(hp) - 1; i >= 0; i-- {
		if hp[i] == ':' {
			return hp[:i], hp[i+1:], true
		}
	}
	return hp, "", false
}

func openDjango(t *testing.T, s server, cfg sqlbackend.Config) *sqlbackend.DjangoBackend {
	t.Helper()
	name, _ := s.newDatabase(t)
	migrate(t, s, name)
	cfg.URL = s.url("django-db", name)
	b, err := sqlbackend.OpenDjango(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestDjangoNotMigrated(t *testing.T) {
	s := servers[0]
	name, _ := s.newDatabase(t)
	b, err := sqlbackend.OpenDjango(sqlbackend.Config{URL: s.url("django-db", name)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Store(testCtx(t), success(testenv.UUID(), 1)); !errors.Is(err, sqlbackend.ErrNotMigrated) {
		t.Fatalf("Store = %v, want ErrNotMigrated", err)
	}
}

func TestDjangoStates(t *testing.T) {
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			b := openDjango(t, s, sqlbackend.Config{})
			ctx := testCtx(t)
			id := testenv.UUID()
			if m, err := b.Get(ctx, id); err != nil || m.Status != result.Pending {
				t.Fatalf("Get of nothing: %+v %v", m, err)
			}
			st := &result.Meta{TaskID: id, Status: result.Started, Extended: true, Name: "tasks.add", Worker: "w@h",
				Result: protocol.Dict{{Key: "pid", Value: int64(1)}, {Key: "hostname", Value: "w@h"}}}
			if err := b.Store(ctx, st); err != nil {
				t.Fatal(err)
			}
			if m, _ := b.Get(ctx, id); m.Status != result.Started || m.Name != "tasks.add" {
				t.Fatalf("STARTED: %+v", m)
			}
			ok := success(id, map[string]any{"a": []any{int64(1), "b"}})
			ok.Children = []any{[]any{[]any{"child", nil}, nil}}
			if err := b.Store(ctx, ok); err != nil {
				t.Fatal(err)
			}
			if err := b.Store(ctx, failure(id, protocol.NewException("KeyError", "late"))); err != nil {
				t.Fatal(err)
			}
			m, err := b.Get(ctx, id)
			if err != nil || m.Status != result.Success || !reflect.DeepEqual(m.Result, ok.Result) || len(m.Children) != 1 || m.DateDone == nil {
				t.Fatalf("SUCCESS: %+v %v", m, err)
			}
			fid := testenv.UUID()
			f := failure(fid, protocol.NewException("KeyError", "x"))
			f.Extended = true
			if err := b.Store(ctx, f); err != nil {
				t.Fatal(err)
			}
			_, err = result.NewAsyncResult(fid, b).Get(ctx, result.WithTimeout(10*time.Second))
			var te *result.TaskError
			if !errors.As(err, &te) || te.Exception.Type != "KeyError" || te.Traceback == "" {
				t.Fatalf("FAILURE: %v", err)
			}
			if err := b.Forget(ctx, fid); err != nil {
				t.Fatal(err)
			}
			if m, _ := b.Get(ctx, fid); m.Status != result.Pending {
				t.Fatalf("after Forget: %+v", m)
			}
			gid := testenv.UUID()
			g := result.NewGroupResult(gid, b, result.NewAsyncResult(id, b))
			if err := g.Save(ctx); err != nil {
				t.Fatal(err)
			}
			r, err := result.RestoreGroup(ctx, b, gid)
			if err != nil || !reflect.DeepEqual(r.AsTuple(), g.AsTuple()) {
				t.Fatalf("RestoreGroup: %v %v", r, err)
			}
			n, err := b.Cleanup(ctx)
			if err != nil || n != 0 {
				t.Fatalf("Cleanup: %d %v", n, err)
			}
		})
	}
}

// TestDjangoChordCounter: parts decrement the counter a client made; the
// last one completes the chord with the parts in header order.
func TestDjangoChordCounter(t *testing.T) {
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			b := openDjango(t, s, sqlbackend.Config{})
			ctx := testCtx(t)
			db, err := b.DB(ctx)
			if err != nil {
				t.Fatal(err)
			}
			gid := testenv.UUID()
			ids := []string{testenv.UUID(), testenv.UUID(), testenv.UUID()}
			subTasks := `[[["` + ids[0] + `", null], null], [["` + ids[1] + `", null], null], [["` + ids[2] + `", null], null]]`
			q := "INSERT INTO django_celery_results_chordcounter (group_id, sub_tasks, count) VALUES (?, ?, 3)"
			if s.name == "postgresql" {
				q = "INSERT INTO django_celery_results_chordcounter (group_id, sub_tasks, count) VALUES ($1, $2, 3)"
			}
			if _, err := db.ExecContext(ctx, q, gid, subTasks); err != nil {
				t.Fatal(err)
			}
			for i := 2; i >= 0; i-- {
				if err := b.Store(ctx, success(ids[i], int64(i*10))); err != nil {
					t.Fatal(err)
				}
				complete, parts, err := b.AddChordPart(ctx, gid, nil, result.ChordPart{TaskID: ids[i], Status: result.Success, Result: int64(i * 10)})
				if err != nil {
					t.Fatal(err)
				}
				if complete != (i == 0) {
					t.Fatalf("part %d: complete = %v", i, complete)
				}
				if complete {
					for j, p := range parts {
						if p.TaskID != ids[j] || p.Result != int64(j*10) || p.Status != result.Success {
							t.Fatalf("part %d = %+v", j, p)
						}
					}
				}
			}
			var n int
			if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM django_celery_results_chordcounter").Scan(&n); err != nil || n != 0 {
				t.Fatalf("counter rows left: %d %v", n, err)
			}
		})
	}
}

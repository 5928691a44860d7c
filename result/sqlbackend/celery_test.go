package sqlbackend_test

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/protocol/pickle"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/sqlbackend"
)

func openCelery(t *testing.T, s server, cfg sqlbackend.Config) (*sqlbackend.Backend, string) {
	t.Helper()
	name, _ := s.newDatabase(t)
	cfg.URL = s.url("db", name)
	b, err := sqlbackend.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, name
}

func TestCeleryStates(t *testing.T) {
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			b, _ := openCelery(t, s, sqlbackend.Config{})
			ctx := testCtx(t)
			id := testenv.UUID()

			m, err := b.Get(ctx, id)
			if err != nil || m.Status != result.Pending {
				t.Fatalf("Get of nothing = %+v, %v; want PENDING", m, err)
			}
			started := &result.Meta{TaskID: id, Status: result.Started,
				Result: protocol.Dict{{Key: "pid", Value: int64(42)}, {Key: "hostname", Value: "celery@h"}}}
			if err := b.Store(ctx, started); err != nil {
				t.Fatal(err)
			}
			m, err = b.Get(ctx, id)
			if err != nil || m.Status != result.Started || m.DateDone != nil ||
				!reflect.DeepEqual(m.Result, map[string]any{"pid": int64(42), "hostname": "celery@h"}) {
				t.Fatalf("STARTED read back as %+v, %v", m, err)
			}
			retry := &result.Meta{TaskID: id, Status: result.Retry, Result: protocol.NewException("Retry", "again"), Traceback: "tb"}
			if err := b.Store(ctx, retry); err != nil {
				t.Fatal(err)
			}
			if m, _ = b.Get(ctx, id); m.Status != result.Retry || m.Traceback != "tb" {
				t.Fatalf("RETRY read back as %+v", m)
			}
			big := new(big.Int).Lsh(big.NewInt(1), 100)
			val := []any{int64(1), "two", 3.5, nil, true, []byte("b"), map[string]any{"k": []any{}}, big}
			if err := b.Store(ctx, success(id, val)); err != nil {
				t.Fatal(err)
			}
			m, err = b.Get(ctx, id)
			if err != nil || m.Status != result.Success || m.DateDone == nil {
				t.Fatalf("SUCCESS read back as %+v, %v", m, err)
			}
			if fmt.Sprint(m.Result) != fmt.Sprint(val) {
				t.Fatalf("value = %#v, want %#v", m.Result, val)
			}
			// The first SUCCESS stays, whatever comes after.
			if err := b.Store(ctx, failure(id, protocol.NewException("KeyError", "late"))); err != nil {
				t.Fatal(err)
			}
			if err := b.Store(ctx, success(id, "second")); err != nil {
				t.Fatal(err)
			}
			if m, _ = b.Get(ctx, id); m.Status != result.Success || fmt.Sprint(m.Result) != fmt.Sprint(val) {
				t.Fatalf("SUCCESS overwritten: %+v", m)
			}

			// FAILURE and REVOKED read back as *TaskError through Get.
			fid, rid := testenv.UUID(), testenv.UUID()
			if err := b.Store(ctx, failure(fid, protocol.NewException("KeyError", "x"))); err != nil {
				t.Fatal(err)
			}
			rev := &result.Meta{TaskID: rid, Status: result.Revoked, DateDone: done(),
				Result: &protocol.Exception{Type: "TaskRevokedError", Module: "celery.exceptions", Args: []any{"revoked"}}}
			if err := b.Store(ctx, rev); err != nil {
				t.Fatal(err)
			}
			_, err = result.NewAsyncResult(fid, b).Get(ctx, result.WithTimeout(10*time.Second))
			var te *result.TaskError
			if !errors.As(err, &te) || te.Exception.Type != "KeyError" || te.Traceback == "" || !reflect.DeepEqual(te.Exception.Args, []any{"x"}) {
				t.Fatalf("Get of FAILURE = %v", err)
			}
			_, err = result.NewAsyncResult(rid, b).Get(ctx, result.WithTimeout(10*time.Second))
			if !errors.As(err, &te) || te.State != result.Revoked {
				t.Fatalf("Get of REVOKED = %v", err)
			}

			if err := b.Forget(ctx, fid); err != nil {
				t.Fatal(err)
			}
			if m, _ = b.Get(ctx, fid); m.Status != result.Pending {
				t.Fatalf("after Forget: %+v", m)
			}
		})
	}
}

func TestCeleryExtended(t *testing.T) {
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			b, _ := openCelery(t, s, sqlbackend.Config{})
			ctx := testCtx(t)
			m := success(testenv.UUID(), int64(4))
			m.Extended, m.Name, m.Args, m.Kwargs, m.Worker, m.Retries, m.Queue =
				true, "tasks.add", []any{int64(2), int64(2)}, map[string]any{"x": "y"}, "celery@h", 2, "celery"
			if err := b.Store(ctx, m); err != nil {
				t.Fatal(err)
			}
			got, err := b.Get(ctx, m.TaskID)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Extended || got.Name != m.Name || got.Worker != m.Worker || got.Queue != m.Queue || got.Retries != 2 ||
				!reflect.DeepEqual(got.Args, m.Args) || !reflect.DeepEqual(got.Kwargs, m.Kwargs) {
				t.Fatalf("extended read back as %+v", got)
			}
		})
	}
}

// TestCeleryBadRows: a row Celery would not write is an error on read,
// and a pickle that names a class is refused, never loaded.
func TestCeleryBadRows(t *testing.T) {
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			b, _ := openCelery(t, s, sqlbackend.Config{})
			ctx := testCtx(t)
			db, err := b.DB(ctx)
			if err != nil {
				t.Fatal(err)
			}
			seq := "nextval('task_id_sequence')"
			if s.name == "mysql" {
				seq = "NEXTVAL(task_id_sequence)"
			}
			insert := func(id, status string, res []byte) {
				q := "INSERT INTO celery_taskmeta (id, task_id, status, result) VALUES (" + seq + ", '" + id + "', '" + status + "', ?)"
				if s.name == "postgresql" {
					q = "INSERT INTO celery_taskmeta (id, task_id, status, result) VALUES (" + seq + ", '" + id + "', '" + status + "', $1)"
				}
				if _, err := db.ExecContext(ctx, q, res); err != nil {
					t.Fatal(err)
				}
			}
			evil := []byte("cos\nsystem\n(S'touch /tmp/gworker-pwned'\ntR.")
			insert("evil", "SUCCESS", evil)
			insert("garbage", "SUCCESS", []byte{0x80, 5, 0x8c, 200})
			insert("nostatus", "", mustPickle(t, int64(1)))
			for _, id := range []string{"evil", "garbage", "nostatus"} {
				_, err := b.Get(ctx, id)
				if !errors.Is(err, sqlbackend.ErrBadRow) || !errors.Is(err, result.ErrBadMeta) {
					t.Fatalf("Get(%s) err = %v, want ErrBadRow", id, err)
				}
			}
			if _, err := b.Get(ctx, "evil"); !errors.Is(err, pickle.ErrForbidden) {
				t.Fatalf("evil pickle: %v", err)
			}
			// A column of the wrong type.
			alter := "ALTER TABLE celery_taskmeta ALTER COLUMN retries TYPE TEXT"
			if s.name == "mysql" {
				alter = "ALTER TABLE celery_taskmeta MODIFY retries TEXT"
			}
			if _, err := db.ExecContext(ctx, alter); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, "UPDATE celery_taskmeta SET retries = 'many', worker = 'w', status = 'SUCCESS' WHERE task_id = 'nostatus'"); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Get(ctx, "nostatus"); !errors.Is(err, sqlbackend.ErrBadRow) {
				t.Fatalf("text in retries: %v", err)
			}
		})
	}
}

func mustPickle(t *testing.T, v any) []byte {
	b, err := pickle.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCeleryBatchedStores: many concurrent Stores (with repeated ids)
// land as if written one by one.
func TestCeleryBatchedStores(t *testing.T) {
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			b, _ := openCelery(t, s, sqlbackend.Config{MaxBatch: 16})
			ctx := testCtx(t)
			const n = 300
			ids := make([]string, n)
			var wg sync.WaitGroup
			errs := make(chan error, 2*n)
			for i := range ids {
				ids[i] = testenv.UUID()
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					if err := b.Store(ctx, &result.Meta{TaskID: ids[i], Status: result.Started}); err != nil {
						errs <- err
					}
					if err := b.Store(ctx, success(ids[i], int64(i))); err != nil {
						errs <- err
					}
				}(i)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			seen := 0
			err := b.WaitReady(ctx, ids, func(m *result.Meta) {
				seen++
				if m.Status != result.Success {
					t.Errorf("%s: %s", m.TaskID, m.Status)
				}
			})
			if err != nil || seen != n {
				t.Fatalf("WaitReady: %v, %d of %d", err, seen, n)
			}
			vals, err := result.NewResultSet(asyncResults(b, ids)...).Join(ctx, result.WithTimeout(10*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				if v != int64(i) {
					t.Fatalf("value %d = %v", i, v)
				}
			}
		})
	}
}

func asyncResults(b result.Backend, ids []string) []result.Result {
	out := make([]result.Result, len(ids))
	for i, id := range ids {
		out[i] = result.NewAsyncResult(id, b)
	}
	return out
}

// TestCeleryWaitReadyPolls: a wait started before the result exists ends
// when it is written.
func TestCeleryWaitReadyPolls(t *testing.T) {
	b, _ := openCelery(t, servers[0], sqlbackend.Config{})
	ctx := testCtx(t)
	id := testenv.UUID()
	got := make(chan any, 1)
	go func() {
		v, err := result.NewAsyncResult(id, b).Get(ctx)
		if err != nil {
			got <- err
			return
		}
		got <- v
	}()
	if err := b.Store(ctx, &result.Meta{TaskID: id, Status: result.Started}); err != nil {
		t.Fatal(err)
	}
	if err := b.Store(ctx, success(id, "late")); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != "late" {
		t.Fatalf("Get = %v", v)
	}
}

func TestCeleryGroups(t *testing.T) {
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			b, _ := openCelery(t, s, sqlbackend.Config{})
			ctx := testCtx(t)
			gid, a, c := testenv.UUID(), testenv.UUID(), testenv.UUID()
			g := result.NewGroupResult(gid, b, result.NewAsyncResult(a, b), result.NewGroupResult("inner", b, result.NewAsyncResult(c, b)))
			if err := g.Save(ctx); err != nil {
				t.Fatal(err)
			}
			r, err := result.RestoreGroup(ctx, b, gid)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(r.AsTuple(), g.AsTuple()) {
				t.Fatalf("restored %v, saved %v", r.AsTuple(), g.AsTuple())
			}
			if err := g.Delete(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := result.RestoreGroup(ctx, b, gid); !errors.Is(err, result.ErrGroupNotFound) {
				t.Fatalf("after Delete: %v", err)
			}
		})
	}
}

// TestCeleryTableNames: database_table_names and database_table_schemas.
func TestCeleryTableNames(t *testing.T) {
	s := servers[0]
	name, db := s.newDatabase(t)
	ctx := testCtx(t)
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA res"); err != nil {
		t.Fatal(err)
	}
	b, err := sqlbackend.Open(sqlbackend.Config{URL: s.url("db", name), TaskTable: "my_tasks", GroupTable: "my_groups", TaskSchema: "res", GroupSchema: "res"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	id := testenv.UUID()
	if err := b.Store(ctx, success(id, "x")); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM res.my_tasks WHERE task_id = $1", id).Scan(&n); err != nil || n != 1 {
		t.Fatalf("row in res.my_tasks: %d, %v", n, err)
	}
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM res.my_groups").Scan(&n); err != nil {
		t.Fatalf("res.my_groups: %v", err)
	}
}

func TestCeleryCleanup(t *testing.T) {
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			b, _ := openCelery(t, s, sqlbackend.Config{Expires: time.Hour})
			ctx := testCtx(t)
			old, fresh, running := testenv.UUID(), testenv.UUID(), testenv.UUID()
			long := time.Now().Add(-2 * time.Hour)
			if err := b.Store(ctx, &result.Meta{TaskID: old, Status: result.Success, DateDone: &long}); err != nil {
				t.Fatal(err)
			}
			if err := b.Store(ctx, success(fresh, nil)); err != nil {
				t.Fatal(err)
			}
			if err := b.Store(ctx, &result.Meta{TaskID: running, Status: result.Started}); err != nil {
				t.Fatal(err)
			}
			n, err := b.Cleanup(ctx)
			if err != nil || n != 1 {
				t.Fatalf("Cleanup = %d, %v; want 1", n, err)
			}
			for id, want := range map[string]result.State{old: result.Pending, fresh: result.Success, running: result.Started} {
				if m, _ := b.Get(ctx, id); m.Status != want {
					t.Errorf("%s: %s, want %s", id, m.Status, want)
				}
			}
		})
	}
}

func TestCeleryEncodeError(t *testing.T) {
	b, _ := openCelery(t, servers[0], sqlbackend.Config{})
	err := b.Store(context.Background(), success(testenv.UUID(), "\xff"))
	var ee *protocol.EncodeError
	if !errors.As(err, &ee) {
		t.Fatalf("err = %v, want *protocol.EncodeError", err)
	}
}

func TestOpenRejects(t *testing.T) {
	for _, u := range []string{"redis://x/0", "db+sqlite:///x.db", "db+postgresql://host", "db+postgresql:///db", "django-db+postgresql://h/db"} {
		if _, err := sqlbackend.Open(sqlbackend.Config{URL: u}); !errors.Is(err, sqlbackend.ErrBadURL) {
			t.Errorf("Open(%s) = %v, want ErrBadURL", u, err)
		}
	}
}

// TestCeleryTooLarge: a result too large for MariaDB's BLOB column fails
// alone, as an encode error the worker turns into FAILURE, and the other
// results of its batch are stored.
func TestCeleryTooLarge(t *testing.T) {
	b, _ := openCelery(t, servers[1], sqlbackend.Config{})
	ctx := testCtx(t)
	big, small := testenv.UUID(), testenv.UUID()
	errs := make(chan error, 2)
	go func() { errs <- b.Store(ctx, success(big, string(make([]byte, 70000)))) }()
	go func() { errs <- b.Store(ctx, success(small, "ok")) }()
	var encodeErrs int
	for range 2 {
		err := <-errs
		var ee *protocol.EncodeError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			encodeErrs++
		default:
			t.Fatalf("Store: %v", err)
		}
	}
	if encodeErrs != 1 {
		t.Fatalf("%d encode errors, want 1", encodeErrs)
	}
	if m, _ := b.Get(ctx, small); m.Status != result.Success {
		t.Fatalf("the small result: %+v", m)
	}
}

// TestCeleryConcurrentCreate: several processes making the tables at once
// (workers and clients starting together) all succeed.
func TestCeleryConcurrentCreate(t *testing.T) {
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			name, _ := s.newDatabase(t)
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					b, err := sqlbackend.Open(sqlbackend.Config{URL: s.url("db", name)})
					if err != nil {
						errs <- err
						return
					}
					defer b.Close()
					errs <- b.Store(testCtx(t), success(testenv.UUID(), int64(1)))
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

package sqlbackend

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

// django-celery-results' content type and encoding for JSON results.
const (
	djangoContentType     = "application/json"
	djangoContentEncoding = "utf-8"
)

// djangoColumns are the columns of django_celery_results_taskresult that
// a store writes, in order; date_created is written on insert only.
var djangoColumns = []string{"task_id", "status", "content_type", "content_encoding", "result", "date_done", "traceback",
	"meta", "task_args", "task_kwargs", "task_name", "worker", "periodic_task_name", "date_created"}

// DjangoBackend keeps results in django-celery-results' tables
// (result_backend = "django-db" in a Django project), reached with a
// django-db+postgresql:// or django-db+mysql:// URL naming the project's
// database. The tables come from Django's migrate; a database without
// them is ErrNotMigrated.
//
// Rows hold what django-celery-results' DatabaseBackend writes: the
// result as JSON text with its content_type and content_encoding,
// meta {"children": [...]}, date_done (and date_created on insert) and,
// with result_extended, task_name, task_args and task_kwargs (the argsrepr
// and kwargsrepr texts, JSON-encoded), worker and traceback (as
// django-celery-results 2.4 does, the traceback is stored only with
// result_extended). A row whose status is SUCCESS is never overwritten.
//
// It implements result.Backend, result.GroupStore, result.NativeJoiner
// and result.ChordCounter: chord parts decrement the ChordCounter row a
// Python client made, as django-celery-results' on_chord_part_return
// does. It is not a result.ChordBackend: a ChordCounter row holds the
// header's result tuples, which Python's apply_chord writes, so Go clients
// cannot start chords on it (canvas returns ErrChordNotSupported before
// sending anything).
type DjangoBackend struct {
	c                     *core
	taskTable, groupTable string
	chordTable            string
	upsert                func(n int) string
	batch                 batcher
}

var (
	_ result.Backend      = (*DjangoBackend)(nil)
	_ result.GroupStore   = (*DjangoBackend)(nil)
	_ result.NativeJoiner = (*DjangoBackend)(nil)
	_ result.ChordCounter = (*DjangoBackend)(nil)
)

// OpenDjango returns the backend of a django-db+ URL. It does not contact
// the server.
func OpenDjango(cfg Config) (*DjangoBackend, error) {
	t, err := parseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if t.layout != LayoutDjango {
		return nil, fmt.Errorf("%w: %s is not a django-db+ URL", ErrBadURL, cfg.URL)
	}
	c := newCore(cfg, t)
	b := &DjangoBackend{
		c:          c,
		taskTable:  c.ident("", DjangoTaskTable),
		groupTable: c.ident("", DjangoGroupTable),
		chordTable: c.ident("", DjangoChordTable),
	}
	c.prepare = b.prepare
	b.upsert = b.upsertSQL()
	b.batch = batcher{max: c.cfg.MaxBatch, write: b.writeRows}
	return b, nil
}

// Close closes the connection pool.
func (b *DjangoBackend) Close() error { return b.c.close() }

// DB returns the connection pool, checking the tables first.
func (b *DjangoBackend) DB(ctx context.Context) (*sql.DB, error) { return b.c.conn(ctx) }

// prepare checks that migrate made the three tables.
func (b *DjangoBackend) prepare(ctx context.Context) error {
	c := b.c
	var missing []string
	err := c.retry(ctx, "check tables", func(ctx context.Context) error {
		missing = missing[:0]
		for _, t := range []string{DjangoTaskTable, DjangoGroupTable, DjangoChordTable} {
			var n int
			var err error
			if c.target.dialect == postgres {
				err = c.db.QueryRowContext(ctx, "SELECT count(*) FROM pg_class c WHERE c.relname = $1 AND c.relkind IN ('r','p') AND pg_catalog.pg_table_is_visible(c.oid)", t).Scan(&n)
			} else {
				err = c.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?", t).Scan(&n)
			}
			if err != nil {
				return err
			}
			if n == 0 {
				missing = append(missing, t)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlbackend: check tables: %w", err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w (missing in %s: %s)", ErrNotMigrated, c.target.database(), strings.Join(missing, ", "))
	}
	return nil
}

func (b *DjangoBackend) upsertSQL() func(int) string {
	c := b.c
	cols := djangoColumns
	rowPH := placeholders(len(cols))
	updated := cols[1 : len(cols)-1] // not task_id, not date_created
	var tail string
	if c.target.dialect == postgres {
		sets := make([]string, len(updated))
		for i, col := range updated {
			sets[i] = col + " = EXCLUDED." + col
		}
		tail = " ON CONFLICT (task_id) DO UPDATE SET " + strings.Join(sets, ", ") +
			" WHERE " + b.taskTable + ".status <> 'SUCCESS'"
	} else {
		sets := make([]string, 0, len(updated))
		for _, col := range updated[1:] {
			sets = append(sets, fmt.Sprintf("%s = IF(status = 'SUCCESS', %s, VALUES(%s))", col, col, col))
		}
		sets = append(sets, "status = IF(status = 'SUCCESS', status, VALUES(status))")
		tail = " ON DUPLICATE KEY UPDATE " + strings.Join(sets, ", ")
	}
	head := "INSERT INTO " + b.taskTable + " (" + strings.Join(cols, ", ") + ") VALUES "
	return func(n int) string {
		var sb strings.Builder
		sb.WriteString(head)
		for i := range n {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(rowPH)
		}
		sb.WriteString(tail)
		return c.sqlText(sb.String())
	}
}

// djangoRow returns the column values of m in djangoColumns order.
func djangoRow(m *result.Meta) ([]any, error) {
	if m == nil || m.TaskID == "" || m.Status == "" {
		return nil, fmt.Errorf("%w: meta without a task id or status", result.ErrBadMeta)
	}
	res, err := protocol.MarshalJSON(result.StoredResult(m.Status, m.Result))
	if err != nil {
		return nil, err
	}
	children := []any{}
	for _, ch := range m.Children {
		if r, ok := ch.(result.Result); ok {
			children = append(children, r.AsTuple())
		} else {
			children = append(children, ch)
		}
	}
	meta, err := protocol.MarshalJSON(protocol.Dict{{Key: "children", Value: children}})
	if err != nil {
		return nil, err
	}
	now := utc(time.Now())
	doneAt := now
	if m.Status.Ready() && m.DateDone != nil {
		doneAt = utc(*m.DateDone)
	}
	row := []any{m.TaskID, string(m.Status), djangoContentType, djangoContentEncoding, string(res), doneAt, nil,
		string(meta), nil, nil, nil, nil, nil, now}
	if m.Extended {
		ar, err := protocol.MarshalJSON(protocol.ArgsRepr(m.Args))
		if err != nil {
			return nil, err
		}
		kr, err := protocol.MarshalJSON(protocol.KwargsRepr(m.Kwargs))
		if err != nil {
			return nil, err
		}
		row[6], row[8], row[9], row[10], row[11] = nullString(m.Traceback), string(ar), string(kr), nullString(m.Name), nullString(m.Worker)
	}
	return row, nil
}

// Store writes a task's state as django-celery-results does, in one
// upsert that leaves a SUCCESS row untouched; concurrent Stores share
// statements unless Config.NoBatching is set.
func (b *DjangoBackend) Store(ctx context.Context, m *result.Meta) error {
	args, err := djangoRow(m)
	if err != nil {
		return err
	}
	if _, err := b.c.conn(ctx); err != nil {
		return err
	}
	r := &row{id: m.TaskID, args: args}
	if b.c.cfg.NoBatching {
		if errs := b.writeRows(ctx, []*row{r}); errs != nil {
			return errs[0]
		}
		return nil
	}
	return b.batch.store(ctx, r)
}

func (b *DjangoBackend) writeRows(ctx context.Context, rows []*row) []error {
	return writeRows(ctx, b.c, "store results", rows, b.upsert)
}

// Get returns the stored meta of a task, or a PENDING meta when there is
// no row.
func (b *DjangoBackend) Get(ctx context.Context, taskID string) (*result.Meta, error) {
	var got map[string]*result.Meta
	err := b.c.retry(ctx, "read results", func(ctx context.Context) error {
		var err error
		got, err = b.fetch(ctx, []string{taskID})
		return err
	})
	if err != nil {
		return nil, err
	}
	if m := got[taskID]; m != nil {
		return m, nil
	}
	return &result.Meta{TaskID: taskID, Status: result.Pending}, nil
}

// WaitReady polls the table for the results of ids; see Config.
func (b *DjangoBackend) WaitReady(ctx context.Context, ids []string, fn func(*result.Meta)) error {
	return b.c.waitReady(ctx, ids, b.fetch, fn)
}

func (b *DjangoBackend) fetch(ctx context.Context, ids []string) (map[string]*result.Meta, error) {
	db, err := b.c.conn(ctx)
	if err != nil {
		return nil, err
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	q := b.c.sqlText("SELECT task_id, status, content_type, content_encoding, result, date_done, traceback, meta, task_name, worker FROM " +
		b.taskTable + " WHERE task_id IN (" + inList(len(ids)) + ")")
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlbackend: read results: %w", err)
	}
	defer rows.Close()
	out := make(map[string]*result.Meta, len(ids))
	for rows.Next() {
		var (
			id, status, ctype, cenc, res, tb, meta, name, worker sql.NullString
			doneAt                                               sql.NullTime
		)
		if err := rows.Scan(&id, &status, &ctype, &cenc, &res, &doneAt, &tb, &meta, &name, &worker); err != nil {
			return nil, fmt.Errorf("%w: %w: %w", ErrBadRow, result.ErrBadMeta, err)
		}
		if status.String == "" {
			return nil, badRow(id.String, "no status")
		}
		m := &result.Meta{TaskID: id.String, Status: result.State(status.String), Traceback: tb.String}
		if res.Valid && res.String != "" {
			v, err := decodeContent(ctype.String, cenc.String, res.String)
			if err != nil {
				return nil, badColumn(id.String, "result", err)
			}
			m.Result = v
		}
		if meta.Valid && meta.String != "" {
			v, err := decodeContent(ctype.String, cenc.String, meta.String)
			if err != nil {
				return nil, badColumn(id.String, "meta", err)
			}
			if d, ok := v.(map[string]any); ok {
				if ch, ok := d["children"].([]any); ok {
					m.Children = ch
				}
			}
		}
		if doneAt.Valid && m.Status.Ready() {
			t := doneAt.Time.UTC()
			m.DateDone = &t
		}
		if name.Valid || worker.Valid {
			m.Extended, m.Name, m.Worker = true, name.String, worker.String
		}
		out[m.TaskID] = m
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlbackend: read results: %w", err)
	}
	return out, nil
}

// decodeContent reads a stored value as django-celery-results does:
// base64 first when the encoding is binary, then the content type, of
// which JSON is accepted (result_serializer = "json", Celery's default).
func decodeContent(ctype, cenc, s string) (any, error) {
	data := []byte(s)
	if cenc == "binary" {
		d, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("base64: %w", err)
		}
		data = d
	}
	if ctype != djangoContentType {
		return nil, fmt.Errorf("content type %q is not accepted (only %s)", ctype, djangoContentType)
	}
	return protocol.UnmarshalJSON(data)
}

// Forget deletes a task's row.
func (b *DjangoBackend) Forget(ctx context.Context, taskID string) error {
	return b.c.exec(ctx, "forget "+taskID, "DELETE FROM "+b.taskTable+" WHERE task_id = ?", taskID)
}

// Cleanup deletes the task and group results whose date_done is more
// than Config.Expires ago, as django-celery-results' cleanup does when
// celery.backend_cleanup runs. It returns the rows deleted.
func (b *DjangoBackend) Cleanup(ctx context.Context) (int64, error) {
	return cleanup(ctx, b.c, b.taskTable, b.groupTable)
}

// SaveGroup stores the group's result tuple as JSON, as
// django-celery-results' _save_group does.
func (b *DjangoBackend) SaveGroup(ctx context.Context, groupID string, tuple any) error {
	data, err := protocol.MarshalJSON(tuple)
	if err != nil {
		return fmt.Errorf("sqlbackend: save group %s: %w", groupID, err)
	}
	now := utc(time.Now())
	q := "INSERT INTO " + b.groupTable + " (group_id, date_created, date_done, content_type, content_encoding, result) VALUES (?, ?, ?, ?, ?, ?)"
	if b.c.target.dialect == postgres {
		q += " ON CONFLICT (group_id) DO UPDATE SET result = EXCLUDED.result, date_done = EXCLUDED.date_done, content_type = EXCLUDED.content_type, content_encoding = EXCLUDED.content_encoding"
	} else {
		q += " ON DUPLICATE KEY UPDATE result = VALUES(result), date_done = VALUES(date_done), content_type = VALUES(content_type), content_encoding = VALUES(content_encoding)"
	}
	return b.c.exec(ctx, "save group "+groupID, q, groupID, now, now, djangoContentType, djangoContentEncoding, string(data))
}

// RestoreGroup returns the saved tuple, or an error wrapping
// result.ErrGroupNotFound.
func (b *DjangoBackend) RestoreGroup(ctx context.Context, groupID string) (any, error) {
	db, err := b.c.conn(ctx)
	if err != nil {
		return nil, err
	}
	var ctype, cenc, data sql.NullString
	q := b.c.sqlText("SELECT content_type, content_encoding, result FROM " + b.groupTable + " WHERE group_id = ?")
	err = b.c.retry(ctx, "restore group", func(ctx context.Context) error {
		return db.QueryRowContext(ctx, q, groupID).Scan(&ctype, &cenc, &data)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", result.ErrGroupNotFound, groupID)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlbackend: restore group %s: %w", groupID, err)
	}
	if !data.Valid {
		return nil, fmt.Errorf("%w: %s has no result", result.ErrGroupNotFound, groupID)
	}
	v, err := decodeContent(ctype.String, cenc.String, data.String)
	if err != nil {
		return nil, fmt.Errorf("sqlbackend: group %s: %w: %w", groupID, result.ErrBadTuple, err)
	}
	return v, nil
}

// DeleteGroup deletes a saved group.
func (b *DjangoBackend) DeleteGroup(ctx context.Context, groupID string) error {
	return b.c.exec(ctx, "delete group "+groupID, "DELETE FROM "+b.groupTable+" WHERE group_id = ?", groupID)
}

// AddChordPart records a finished chord header part as
// django-celery-results' on_chord_part_return does: in one transaction,
// the group's ChordCounter row is locked (SELECT ... FOR UPDATE), its
// count decremented, and the row deleted when the count reaches zero.
// Then, if every header result is ready, it returns complete=true with
// one part per header result in header order (a nested group's part holds
// its joined list, or its first failure). Without a ChordCounter row the
// part is logged and ignored, as Python does.
func (b *DjangoBackend) AddChordPart(ctx context.Context, groupID string, groupIndex *int, part result.ChordPart) (bool, []result.ChordPart, error) {
	db, err := b.c.conn(ctx)
	if err != nil {
		return false, nil, err
	}
	var (
		found, last bool
		subTasks    string
	)
	err = b.c.retry(ctx, "count chord part", func(ctx context.Context) error {
		found, last, subTasks = false, false, ""
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		var id, count int64
		err = tx.QueryRowContext(ctx, b.c.sqlText("SELECT id, sub_tasks, count FROM "+b.chordTable+" WHERE group_id = ? FOR UPDATE"), groupID).Scan(&id, &subTasks, &count)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		count--
		if count != 0 {
			_, err = tx.ExecContext(ctx, b.c.sqlText("UPDATE "+b.chordTable+" SET count = ? WHERE id = ?"), count, id)
		} else {
			last = true
			_, err = tx.ExecContext(ctx, b.c.sqlText("DELETE FROM "+b.chordTable+" WHERE id = ?"), id)
		}
		if err != nil {
			return err
		}
		return tx.Commit()
	})
	if err != nil {
		return false, nil, fmt.Errorf("sqlbackend: chord %s part %s: %w", groupID, part.TaskID, err)
	}
	if !found {
		b.c.log.Warn("Can't find ChordCounter for Group "+groupID, zap.String("group_id", groupID), zap.String("task_id", part.TaskID))
		return false, nil, nil
	}
	if !last {
		return false, nil, nil
	}
	v, err := protocol.UnmarshalJSON([]byte(subTasks))
	if err != nil {
		return false, nil, fmt.Errorf("sqlbackend: chord %s: sub_tasks: %w", groupID, err)
	}
	tuples, ok := v.([]any)
	if !ok {
		return false, nil, fmt.Errorf("sqlbackend: chord %s: sub_tasks is %s, not a list", groupID, protocol.TypeName(v))
	}
	deps := make([]result.Result, len(tuples))
	for i, t := range tuples {
		r, err := result.FromTuple(t, b)
		if err != nil {
			return false, nil, fmt.Errorf("sqlbackend: chord %s: %w", groupID, err)
		}
		deps[i] = r
	}
	if ready, err := result.NewResultSet(deps...).Ready(ctx); err != nil || !ready {
		if err == nil {
			b.c.log.Warn("chord header complete but not every result is ready: the body is not sent (as in django-celery-results)", zap.String("group_id", groupID))
		}
		return false, nil, err
	}
	parts := make([]result.ChordPart, len(deps))
	for i, d := range deps {
		p, err := b.partOf(ctx, d)
		if err != nil {
			return false, nil, fmt.Errorf("sqlbackend: chord %s: %w", groupID, err)
		}
		parts[i] = p
	}
	return true, parts, nil
}

// partOf returns the chord part of one header result: a task's stored
// state, or a nested group's joined values (its first failure if any).
func (b *DjangoBackend) partOf(ctx context.Context, r result.Result) (result.ChordPart, error) {
	switch x := r.(type) {
	case *result.AsyncResult:
		m, err := x.Meta(ctx)
		if err != nil {
			return result.ChordPart{}, err
		}
		return result.ChordPart{TaskID: x.ID(), Status: m.Status, Result: m.Result}, nil
	case *result.GroupResult:
		vals, err := x.Join(result.AllowJoinResult(ctx), result.WithTimeout(time.Minute))
		var te *result.TaskError
		if errors.As(err, &te) {
			var v any
			if te.Exception != nil {
				v = te.Exception.Value()
			}
			return result.ChordPart{TaskID: te.TaskID, Status: te.State, Result: v}, nil
		}
		if err != nil {
			return result.ChordPart{}, err
		}
		return result.ChordPart{TaskID: x.ID(), Status: result.Success, Result: vals}, nil
	}
	return result.ChordPart{}, fmt.Errorf("unsupported header result %T", r)
}

package sqlbackend

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/protocol/pickle"
	"github.com/gworker/gworker/result"
)

// Sequence names of Celery's tables (they keep these names whatever the
// tables are called).
const (
	taskSequence  = "task_id_sequence"
	groupSequence = "taskset_id_sequence"
)

// celeryColumns are celery_taskmeta's columns after id, in table order.
var celeryColumns = []string{"task_id", "status", "result", "date_done", "traceback", "name", "args", "kwargs", "worker", "retries", "queue"}

// Backend keeps results in Celery's database backend tables
// (result_backend = "db+postgresql://..." or "db+mysql://..."):
// celery_taskmeta and celery_tasksetmeta, with SQLAlchemy's sequences,
// created as Celery's create_all creates them when they are missing. The
// result column is a pickle (package protocol/pickle); args and kwargs
// are JSON, as Celery writes them with result_extended.
//
// It implements result.Backend, result.GroupStore, result.NativeJoiner
// (by polling) and result.ChordPoller: it has no chord counter, so
// clients (Python's and canvas) send celery.chord_unlock for chords, which
// polls this backend. It is safe for concurrent use.
type Backend struct {
	c                     *core
	taskTable, groupTable string // quoted, schema-qualified
	taskID, groupID       string // id expression ("" when the table has a default)
	upsert                func(n int) string
	batch                 batcher
}

var (
	_ result.Backend      = (*Backend)(nil)
	_ result.GroupStore   = (*Backend)(nil)
	_ result.NativeJoiner = (*Backend)(nil)
	_ result.ChordPoller  = (*Backend)(nil)
)

// PollsChords marks Backend as a result.ChordPoller: Go clients complete
// chords on it with celery.chord_unlock, as Python clients do.
func (b *Backend) PollsChords() {}

// Open returns the backend of a db+ URL. It does not contact the server:
// the pool opens, and the tables are made, on first use.
func Open(cfg Config) (*Backend, error) {
	t, err := parseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if t.layout != LayoutCelery {
		return nil, fmt.Errorf("%w: %s is a django-db URL: use OpenDjango", ErrBadURL, cfg.URL)
	}
	c := newCore(cfg, t)
	if c.cfg.TaskTable == "" {
		c.cfg.TaskTable = CeleryTaskTable
	}
	if c.cfg.GroupTable == "" {
		c.cfg.GroupTable = CeleryGroupTable
	}
	b := &Backend{
		c:          c,
		taskTable:  c.ident(c.cfg.TaskSchema, c.cfg.TaskTable),
		groupTable: c.ident(c.cfg.GroupSchema, c.cfg.GroupTable),
	}
	c.prepare = b.prepare
	b.batch = batcher{max: c.cfg.MaxBatch, write: b.writeRows}
	return b, nil
}

// Close closes the connection pool.
func (b *Backend) Close() error { return b.c.close() }

// DB returns the connection pool, opening it and making the tables if
// needed.
func (b *Backend) DB(ctx context.Context) (*sql.DB, error) { return b.c.conn(ctx) }

// prepare is Celery's create_all: each sequence and table is created
// when missing (CREATE ... IF NOT EXISTS), with SQLAlchemy's DDL; tables
// that exist are used as they are.
func (b *Backend) prepare(ctx context.Context) error {
	c := b.c
	return c.retry(ctx, "create tables", func(ctx context.Context) error {
		db := c.db
		var err error
		if b.taskID, err = b.ensureTable(ctx, db, c.cfg.TaskSchema, c.cfg.TaskTable, taskSequence, celeryTaskDDL); err != nil {
			return err
		}
		if b.groupID, err = b.ensureTable(ctx, db, c.cfg.GroupSchema, c.cfg.GroupTable, groupSequence, celeryGroupDDL); err != nil {
			return err
		}
		b.upsert = b.upsertSQL()
		return nil
	})
}

const celeryTaskDDL = `CREATE TABLE %s (
	id INTEGER NOT NULL%s,
	task_id VARCHAR(155),
	status VARCHAR(50),
	result %s,
	date_done %s,
	traceback TEXT,
	name VARCHAR(155),
	args %s,
	kwargs %s,
	worker VARCHAR(155),
	retries INTEGER,
	queue VARCHAR(155),
	PRIMARY KEY (id),
	UNIQUE (task_id)
)`

const celeryGroupDDL = `CREATE TABLE %s (
	id INTEGER NOT NULL%s,
	taskset_id VARCHAR(155),
	result %s,
	date_done %s,
	PRIMARY KEY (id),
	UNIQUE (taskset_id)
)`

// ensureTable creates the sequence and the table if missing and returns
// the expression that gives a new row's id.
func (b *Backend) ensureTable(ctx context.Context, db *sql.DB, schema, table, seq, ddl string) (string, error) {
	c := b.c
	binary, ts, autoinc := "BYTEA", "TIMESTAMP WITHOUT TIME ZONE", ""
	if c.target.dialect == mysql {
		binary, ts = "BLOB", "DATETIME"
		if !c.mariadb {
			autoinc = " AUTO_INCREMENT" // MySQL has no sequences
		}
	}
	exists, err := b.relationExists(ctx, db, schema, table, false)
	if err != nil {
		return "", err
	}
	hasSeq := false
	if c.target.dialect == postgres || c.mariadb {
		if hasSeq, err = b.relationExists(ctx, db, schema, seq, true); err != nil {
			return "", err
		}
		if !exists && !hasSeq {
			q := "CREATE SEQUENCE IF NOT EXISTS " + c.ident(schema, seq) + " START WITH 1"
			if _, err := db.ExecContext(ctx, q); err != nil && !createRace(err) {
				return "", fmt.Errorf("sqlbackend: create sequence %s: %w", seq, err)
			}
			hasSeq = true
		}
	}
	if !exists {
		var q string
		if strings.Contains(ddl, "task_id VARCHAR") {
			q = fmt.Sprintf(ddl, c.ident(schema, table), autoinc, binary, ts, binary, binary)
		} else {
			q = fmt.Sprintf(ddl, c.ident(schema, table), autoinc, binary, ts)
		}
		q = strings.Replace(q, "CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)
		if _, err := db.ExecContext(ctx, q); err != nil {
			// Another process made it at the same time (PostgreSQL's IF
			// NOT EXISTS is not atomic): fine if it is there now.
			if !createRace(err) {
				return "", fmt.Errorf("sqlbackend: create table %s: %w", table, err)
			}
			if ok, xerr := b.relationExists(ctx, db, schema, table, false); xerr != nil || !ok {
				return "", fmt.Errorf("sqlbackend: create table %s: %w", table, err)
			}
		}
	}
	if !hasSeq {
		return "", nil
	}
	if c.target.dialect == postgres {
		return "nextval('" + strings.ReplaceAll(c.ident(schema, seq), "'", "''") + "')", nil
	}
	return "NEXTVAL(" + c.ident(schema, seq) + ")", nil
}

// relationExists reports whether a table (or a sequence) exists.
func (b *Backend) relationExists(ctx context.Context, db *sql.DB, schema, name string, sequence bool) (bool, error) {
	c := b.c
	var n int
	var err error
	if c.target.dialect == postgres {
		kinds := "'r','p','v','m','f'"
		if sequence {
			kinds = "'S'"
		}
		q := `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.relname = $1 AND c.relkind IN (` + kinds + `) AND `
		if schema != "" {
			err = db.QueryRowContext(ctx, q+"n.nspname = $2", name, schema).Scan(&n)
		} else {
			err = db.QueryRowContext(ctx, q+"pg_catalog.pg_table_is_visible(c.oid)", name).Scan(&n)
		}
	} else {
		typ := "<> 'SEQUENCE'"
		if sequence {
			typ = "= 'SEQUENCE'"
		}
		q := "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = ? AND table_type " + typ + " AND table_schema = "
		if schema != "" {
			err = db.QueryRowContext(ctx, q+"?", name, schema).Scan(&n)
		} else {
			err = db.QueryRowContext(ctx, q+"DATABASE()", name).Scan(&n)
		}
	}
	if err != nil {
		return false, fmt.Errorf("sqlbackend: look up %s: %w", name, err)
	}
	return n > 0, nil
}

// upsertSQL builds the statement writing n rows: an insert that updates
// a row of the same task id unless that row's status is SUCCESS.
func (b *Backend) upsertSQL() func(int) string {
	c := b.c
	cols := celeryColumns
	colList := strings.Join(cols, ", ")
	rowPH := placeholders(len(cols))
	if b.taskID != "" {
		colList = "id, " + colList
		rowPH = "(" + b.taskID + ", " + rowPH[1:]
	}
	var tail string
	if c.target.dialect == postgres {
		sets := make([]string, 0, len(cols)-1)
		for _, col := range cols[1:] {
			sets = append(sets, col+" = EXCLUDED."+col)
		}
		tail = " ON CONFLICT (task_id) DO UPDATE SET " + strings.Join(sets, ", ") +
			" WHERE " + b.taskTable + ".status IS DISTINCT FROM 'SUCCESS'"
	} else {
		// Assignments run left to right: status, which the others test,
		// comes last.
		sets := make([]string, 0, len(cols)-1)
		for _, col := range cols[2:] {
			sets = append(sets, fmt.Sprintf("%s = IF(status <=> 'SUCCESS', %s, VALUES(%s))", col, col, col))
		}
		sets = append(sets, "status = IF(status <=> 'SUCCESS', status, VALUES(status))")
		tail = " ON DUPLICATE KEY UPDATE " + strings.Join(sets, ", ")
	}
	head := "INSERT INTO " + b.taskTable + " (" + colList + ") VALUES "
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

// celeryResult is the value Celery pickles into the result column: the
// return value, or the exception dict with exc_message as a tuple.
func celeryResult(st result.State, v any) any {
	stored := result.StoredResult(st, v)
	if d, ok := stored.(protocol.Dict); ok && st.Exceptional() {
		out := slices.Clone(d)
		for i, it := range out {
			if it.Key == "exc_message" {
				if l, ok := it.Value.([]any); ok {
					out[i].Value = pickle.Tuple(l)
				}
			}
		}
		return out
	}
	return stored
}

// rowArgs returns the column values of m in celeryColumns order.
func rowArgs(m *result.Meta) ([]any, error) {
	if m == nil || m.TaskID == "" || m.Status == "" {
		return nil, fmt.Errorf("%w: meta without a task id or status", result.ErrBadMeta)
	}
	res, err := pickle.Marshal(celeryResult(m.Status, m.Result))
	if err != nil {
		return nil, &protocol.EncodeError{Msg: "result of task " + m.TaskID + " for the database backend", Err: err}
	}
	args := []any{m.TaskID, string(m.Status), res, nil, nullString(m.Traceback), nil, nil, nil, nil, nil, nil}
	if m.Status.Ready() {
		done := time.Now()
		if m.DateDone != nil {
			done = *m.DateDone
		}
		args[3] = utc(done)
	}
	if m.Extended {
		a, k := m.Args, m.Kwargs
		if a == nil {
			a = []any{}
		}
		if k == nil {
			k = map[string]any{}
		}
		ab, err := protocol.MarshalJSON(a)
		if err != nil {
			return nil, err
		}
		kb, err := protocol.MarshalJSON(k)
		if err != nil {
			return nil, err
		}
		args[5], args[6], args[7], args[8], args[9], args[10] = nullString(m.Name), ab, kb, nullString(m.Worker), int64(m.Retries), nullString(m.Queue)
	}
	return args, nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Store writes a task's state as Celery's database backend does, in one
// upsert that leaves a row whose status is SUCCESS untouched. Concurrent
// Stores share multi-row statements unless Config.NoBatching is set.
// Transient errors are retried for Config.RetryFor. A value the pickle
// codec cannot write is a *protocol.EncodeError.
func (b *Backend) Store(ctx context.Context, m *result.Meta) error {
	args, err := rowArgs(m)
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

// writeRows writes rows of distinct task ids in one statement, sorted by
// id so that concurrent batches lock rows in the same order. A statement
// that fails for good is split, so that one bad row fails alone.
func (b *Backend) writeRows(ctx context.Context, rows []*row) []error {
	return writeRows(ctx, b.c, "store results", rows, b.upsert)
}

func writeRows(ctx context.Context, c *core, what string, rows []*row, upsert func(int) string) []error {
	sorted := slices.Clone(rows)
	slices.SortFunc(sorted, func(x, y *row) int { return strings.Compare(x.id, y.id) })
	args := make([]any, 0, len(rows)*len(rows[0].args))
	for _, r := range sorted {
		args = append(args, r.args...)
	}
	err := c.retry(ctx, what, func(ctx context.Context) error {
		_, err := c.db.ExecContext(ctx, upsert(len(sorted)), args...)
		return err
	})
	if err == nil {
		return nil
	}
	errs := make([]error, len(rows))
	if len(rows) == 1 || transient(err) {
		for i, r := range rows {
			if doesNotFit(err) {
				// Trying again cannot help: the worker stores a small
				// FAILURE instead, as for a value it cannot encode.
				errs[i] = &protocol.EncodeError{Msg: "result of task " + r.id + " does not fit the table's columns", Err: err}
				continue
			}
			errs[i] = fmt.Errorf("sqlbackend: store %s: %w", r.id, err)
		}
		return errs
	}
	for i, r := range rows {
		if e := writeRows(ctx, c, what, []*row{r}, upsert); e != nil {
			errs[i] = e[0]
		}
	}
	return errs
}

// Get returns the stored meta of a task, or a PENDING meta when there is
// no row. A row whose result is not a pickle of the accepted types, or
// whose columns hold values of the wrong type, is an error wrapping
// ErrBadRow and result.ErrBadMeta.
func (b *Backend) Get(ctx context.Context, taskID string) (*result.Meta, error) {
	got, err := b.fetchRetry(ctx, []string{taskID})
	if err != nil {
		return nil, err
	}
	if m := got[taskID]; m != nil {
		return m, nil
	}
	return &result.Meta{TaskID: taskID, Status: result.Pending}, nil
}

func (b *Backend) fetchRetry(ctx context.Context, ids []string) (map[string]*result.Meta, error) {
	var got map[string]*result.Meta
	err := b.c.retry(ctx, "read results", func(ctx context.Context) error {
		var err error
		got, err = b.fetch(ctx, ids)
		return err
	})
	return got, err
}

// fetch reads the rows of ids.
func (b *Backend) fetch(ctx context.Context, ids []string) (map[string]*result.Meta, error) {
	db, err := b.c.conn(ctx)
	if err != nil {
		return nil, err
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	q := b.c.sqlText("SELECT " + strings.Join(celeryColumns, ", ") + " FROM " + b.taskTable + " WHERE task_id IN (" + inList(len(ids)) + ")")
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlbackend: read results: %w", err)
	}
	defer rows.Close()
	out := make(map[string]*result.Meta, len(ids))
	for rows.Next() {
		m, err := scanCelery(rows)
		if err != nil {
			return nil, err
		}
		out[m.TaskID] = m
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlbackend: read results: %w", err)
	}
	return out, nil
}

func badRow(id string, format string, args ...any) error {
	return fmt.Errorf("%w: %w: task %s: %s", ErrBadRow, result.ErrBadMeta, id, fmt.Sprintf(format, args...))
}

// badColumn is badRow for a column whose value could not be decoded; the
// decoder's error is kept for errors.Is.
func badColumn(id, column string, err error) error {
	return fmt.Errorf("%w: %w: task %s: %s column: %w", ErrBadRow, result.ErrBadMeta, id, column, err)
}

func scanCelery(rows *sql.Rows) (*result.Meta, error) {
	var (
		id, status, tb, name, worker, queue sql.NullString
		res, args, kwargs                   []byte
		done                                sql.NullTime
		retries                             sql.NullInt64
	)
	if err := rows.Scan(&id, &status, &res, &done, &tb, &name, &args, &kwargs, &worker, &retries, &queue); err != nil {
		return nil, fmt.Errorf("%w: %w: %w", ErrBadRow, result.ErrBadMeta, err)
	}
	if !status.Valid || status.String == "" {
		return nil, badRow(id.String, "no status")
	}
	m := &result.Meta{TaskID: id.String, Status: result.State(status.String), Traceback: tb.String}
	if len(res) > 0 {
		v, err := pickle.Unmarshal(res)
		if err != nil {
			return nil, badColumn(id.String, "result", err)
		}
		m.Result = v
	}
	if done.Valid && m.Status.Ready() {
		t := done.Time.UTC()
		m.DateDone = &t
	}
	if name.Valid || worker.Valid || queue.Valid {
		m.Extended = true
		m.Name, m.Worker, m.Queue, m.Retries = name.String, worker.String, queue.String, int(retries.Int64)
		if len(args) > 0 {
			v, err := protocol.UnmarshalJSON(args)
			if err != nil {
				return nil, badColumn(id.String, "args", err)
			}
			l, ok := v.([]any)
			if !ok {
				return nil, badRow(id.String, "args column holds %s, not a list", protocol.TypeName(v))
			}
			m.Args = l
		}
		if len(kwargs) > 0 {
			v, err := protocol.UnmarshalJSON(kwargs)
			if err != nil {
				return nil, badColumn(id.String, "kwargs", err)
			}
			d, ok := v.(map[string]any)
			if !ok {
				return nil, badRow(id.String, "kwargs column holds %s, not a dict", protocol.TypeName(v))
			}
			m.Kwargs = d
		}
	}
	return m, nil
}

// WaitReady polls the table for the results of ids (many per query),
// with an interval that grows while nothing changes; see Config.
func (b *Backend) WaitReady(ctx context.Context, ids []string, fn func(*result.Meta)) error {
	return b.c.waitReady(ctx, ids, b.fetch, fn)
}

// Forget deletes a task's row.
func (b *Backend) Forget(ctx context.Context, taskID string) error {
	return b.c.exec(ctx, "forget "+taskID, "DELETE FROM "+b.taskTable+" WHERE task_id = ?", taskID)
}

// Cleanup deletes the tasks and groups that finished more than
// Config.Expires ago, as Celery's DatabaseBackend.cleanup does when the
// celery.backend_cleanup task runs. It returns the rows deleted.
func (b *Backend) Cleanup(ctx context.Context) (int64, error) {
	return cleanup(ctx, b.c, b.taskTable, b.groupTable)
}

func cleanup(ctx context.Context, c *core, tables ...string) (int64, error) {
	if c.cfg.NoExpiry {
		return 0, nil
	}
	db, err := c.conn(ctx)
	if err != nil {
		return 0, err
	}
	before := utc(time.Now().Add(-c.cfg.Expires))
	var total int64
	for _, t := range tables {
		q := c.sqlText("DELETE FROM " + t + " WHERE date_done < ?")
		err := c.retry(ctx, "cleanup", func(ctx context.Context) error {
			res, err := db.ExecContext(ctx, q, before)
			if err != nil {
				return err
			}
			n, _ := res.RowsAffected()
			total += n
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("sqlbackend: cleanup %s: %w", t, err)
		}
	}
	return total, nil
}

// Group objects as Celery pickles them.
const (
	resultModule  = "celery.result"
	maxGroupDepth = 1000
)

// groupGlobals are the callables a pickled GroupResult names: the result
// classes, and the backend and timedelta its AsyncResults carry. They are
// read as data; nothing is imported.
var groupGlobals = []string{
	"celery.result.GroupResult", "celery.result.AsyncResult", "celery.result.ResultSet",
	"celery.app.base._unpickle_appattr",
	"celery.backends.base.unpickle_backend", "celery.backends.database.DatabaseBackend",
	"datetime.timedelta",
}

// groupObject turns a result tuple into the GroupResult/AsyncResult
// reductions Celery pickles. Members carry no backend (None): Python
// binds them to its app's backend when it loads them.
func groupObject(t any, depth int) (any, error) {
	if depth > maxGroupDepth {
		return nil, fmt.Errorf("%w: nested too deep", result.ErrBadTuple)
	}
	pair, ok := t.([]any)
	if !ok || len(pair) != 2 {
		return nil, fmt.Errorf("%w: want [res, nodes]", result.ErrBadTuple)
	}
	var id string
	var parent any
	switch res := pair[0].(type) {
	case string:
		id = res
	case []any:
		if len(res) != 2 {
			return nil, fmt.Errorf("%w: want [id, parent]", result.ErrBadTuple)
		}
		s, ok := res[0].(string)
		if !ok {
			return nil, fmt.Errorf("%w: id is not a string", result.ErrBadTuple)
		}
		id = s
		if res[1] != nil {
			p, err := groupObject(res[1], depth+1)
			if err != nil {
				return nil, err
			}
			parent = p
		}
	default:
		return nil, fmt.Errorf("%w: want [id, parent]", result.ErrBadTuple)
	}
	if pair[1] == nil {
		return pickle.Call{Module: resultModule, Name: "AsyncResult", Args: pickle.Tuple{id, nil, nil, nil, parent}}, nil
	}
	nodes, ok := pair[1].([]any)
	if !ok {
		return nil, fmt.Errorf("%w: children are not a list", result.ErrBadTuple)
	}
	members := make([]any, len(nodes))
	for i, n := range nodes {
		o, err := groupObject(n, depth+1)
		if err != nil {
			return nil, err
		}
		members[i] = o
	}
	return pickle.Call{Module: resultModule, Name: "GroupResult", Args: pickle.Tuple{id, members}}, nil
}

// groupTuple reads a pickled GroupResult (or AsyncResult) back as a
// result tuple.
func groupTuple(v any, depth int) (any, error) {
	if depth > maxGroupDepth {
		return nil, fmt.Errorf("%w: nested too deep", result.ErrBadTuple)
	}
	c, ok := v.(pickle.Call)
	if !ok {
		if l, ok := v.([]any); ok && len(l) == 2 {
			return l, nil // already a tuple
		}
		return nil, fmt.Errorf("%w: a saved group holds %s", result.ErrBadTuple, protocol.TypeName(v))
	}
	if c.Module+"."+c.Name == "celery.app.base._unpickle_appattr" && len(c.Args) == 2 {
		// app.GroupResult(...) / app.AsyncResult(...): the class by its
		// name on the app, and its arguments.
		name, _ := c.Args[0].(string)
		args, ok := c.Args[1].([]any)
		if (name == "GroupResult" || name == "AsyncResult") && ok {
			c = pickle.Call{Module: resultModule, Name: name, Args: pickle.Tuple(args)}
		}
	}
	if len(c.Args) == 0 {
		return nil, fmt.Errorf("%w: %s.%s without arguments", result.ErrBadTuple, c.Module, c.Name)
	}
	id, ok := c.Args[0].(string)
	if !ok {
		return nil, fmt.Errorf("%w: %s id is %s", result.ErrBadTuple, c.Name, protocol.TypeName(c.Args[0]))
	}
	switch c.Module + "." + c.Name {
	case "celery.result.AsyncResult":
		var parent any
		if len(c.Args) >= 5 && c.Args[4] != nil {
			p, err := groupTuple(c.Args[4], depth+1)
			if err != nil {
				return nil, err
			}
			parent = p
		}
		return []any{[]any{id, parent}, nil}, nil
	case "celery.result.GroupResult", "celery.result.ResultSet":
		var members []any
		if len(c.Args) >= 2 {
			l, ok := c.Args[1].([]any)
			if !ok && c.Args[1] != nil {
				return nil, fmt.Errorf("%w: group %s members are %s", result.ErrBadTuple, id, protocol.TypeName(c.Args[1]))
			}
			members = make([]any, len(l))
			for i, m := range l {
				t, err := groupTuple(m, depth+1)
				if err != nil {
					return nil, err
				}
				members[i] = t
			}
		}
		if members == nil {
			members = []any{}
		}
		return []any{[]any{id, nil}, members}, nil
	}
	return nil, fmt.Errorf("%w: a saved group holds %s.%s", result.ErrBadTuple, c.Module, c.Name)
}

// SaveGroup stores the group in celery_tasksetmeta as Celery does: the
// GroupResult object pickled, its members as AsyncResults, date_done now.
// Saving a group id again replaces it.
func (b *Backend) SaveGroup(ctx context.Context, groupID string, tuple any) error {
	obj, err := groupObject(tuple, 0)
	if err != nil {
		return fmt.Errorf("sqlbackend: save group %s: %w", groupID, err)
	}
	data, err := pickle.Marshal(obj)
	if err != nil {
		return fmt.Errorf("sqlbackend: save group %s: %w", groupID, err)
	}
	if _, err := b.c.conn(ctx); err != nil {
		return err
	}
	cols, vals := "taskset_id, result, date_done", "?, ?, ?"
	if b.groupID != "" {
		cols, vals = "id, "+cols, b.groupID+", "+vals
	}
	q := "INSERT INTO " + b.groupTable + " (" + cols + ") VALUES (" + vals + ")"
	if b.c.target.dialect == postgres {
		q += " ON CONFLICT (taskset_id) DO UPDATE SET result = EXCLUDED.result, date_done = EXCLUDED.date_done"
	} else {
		q += " ON DUPLICATE KEY UPDATE result = VALUES(result), date_done = VALUES(date_done)"
	}
	return b.c.exec(ctx, "save group "+groupID, q, groupID, data, utc(time.Now()))
}

// RestoreGroup reads a group saved by Celery or by SaveGroup back as its
// result tuple, or returns an error wrapping result.ErrGroupNotFound. The
// pickle is read with only the result classes allowed, as data.
func (b *Backend) RestoreGroup(ctx context.Context, groupID string) (any, error) {
	db, err := b.c.conn(ctx)
	if err != nil {
		return nil, err
	}
	var data []byte
	q := b.c.sqlText("SELECT result FROM " + b.groupTable + " WHERE taskset_id = ?")
	err = b.c.retry(ctx, "restore group", func(ctx context.Context) error {
		return db.QueryRowContext(ctx, q, groupID).Scan(&data)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", result.ErrGroupNotFound, groupID)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlbackend: restore group %s: %w", groupID, err)
	}
	v, err := pickle.UnmarshalOptions{Globals: groupGlobals}.Unmarshal(data)
	if err != nil {
		return nil, fmt.Errorf("sqlbackend: group %s: %w: %w", groupID, result.ErrBadTuple, err)
	}
	t, err := groupTuple(v, 0)
	if err != nil {
		return nil, fmt.Errorf("sqlbackend: group %s: %w", groupID, err)
	}
	return t, nil
}

// DeleteGroup deletes a saved group.
func (b *Backend) DeleteGroup(ctx context.Context, groupID string) error {
	return b.c.exec(ctx, "delete group "+groupID, "DELETE FROM "+b.groupTable+" WHERE taskset_id = ?", groupID)
}

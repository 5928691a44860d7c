package sqlbackend

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/zap"

	"github.com/gworker/gworker/internal/redact"
)

// core is the connection and retry machinery both layouts share.
type core struct {
	cfg    Config
	target *target
	log    *zap.Logger

	// prepare runs once the pool is open, to create or check tables; it
	// is retried on the next operation until it succeeds.
	prepare func(ctx context.Context) error

	mu      sync.Mutex
	db      *sql.DB
	ready   bool
	mariadb bool
	closed  bool
}

func newCore(cfg Config, t *target) *core {
	cfg = cfg.withDefaults()
	return &core{cfg: cfg, target: t, log: cfg.Logger}
}

// conn returns the pool, opening it and preparing the tables on first
// use.
func (c *core) conn(ctx context.Context) (*sql.DB, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("sqlbackend: backend closed")
	}
	if c.ready {
		return c.db, nil
	}
	if c.db == nil {
		db, err := c.open(ctx)
		if err != nil {
			return nil, err
		}
		c.db = db
	}
	if c.prepare != nil {
		if err := c.prepare(ctx); err != nil {
			return nil, err
		}
	}
	c.ready = true
	return c.db, nil
}

func (c *core) open(ctx context.Context) (*sql.DB, error) {
	var db *sql.DB
	switch c.target.dialect {
	case postgres:
		u := *c.target.u
		u.Scheme = "postgres"
		pc, err := pgx.ParseConfig(u.String())
		if err != nil {
			return nil, fmt.Errorf("sqlbackend: %w", redact.Error(err, c.cfg.URL))
		}
		if pc.RuntimeParams == nil {
			pc.RuntimeParams = map[string]string{}
		}
		pc.RuntimeParams["statement_timeout"] = strconv.FormatInt(c.cfg.StatementTimeout.Milliseconds(), 10)
		pc.RuntimeParams["lock_timeout"] = strconv.FormatInt(c.cfg.LockTimeout.Milliseconds(), 10)
		pc.RuntimeParams["timezone"] = "UTC"
		if _, ok := pc.RuntimeParams["application_name"]; !ok {
			pc.RuntimeParams["application_name"] = "gworker"
		}
		db = stdlib.OpenDB(*pc)
	case mysql:
		mc, err := c.mysqlConfig()
		if err != nil {
			return nil, err
		}
		// Which server decides the statement timeout's variable: probe
		// once without it.
		probe, err := c.mysqlDB(mc)
		if err != nil {
			return nil, err
		}
		var version string
		err = c.retry(ctx, "connect", func(ctx context.Context) error {
			return probe.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version)
		})
		probe.Close()
		if err != nil {
			return nil, err
		}
		c.mariadb = strings.Contains(strings.ToLower(version), "mariadb")
		if c.mariadb {
			mc.Params["max_statement_time"] = strconv.FormatFloat(c.cfg.StatementTimeout.Seconds(), 'f', -1, 64)
		} else {
			mc.Params["max_execution_time"] = strconv.FormatInt(c.cfg.StatementTimeout.Milliseconds(), 10)
		}
		if db, err = c.mysqlDB(mc); err != nil {
			return nil, err
		}
	}
	db.SetMaxOpenConns(c.cfg.MaxOpenConns)
	db.SetMaxIdleConns(c.cfg.MaxOpenConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

func (c *core) mysqlConfig() (*gomysql.Config, error) {
	u := c.target.u
	mc := gomysql.NewConfig()
	mc.User = u.User.Username()
	mc.Passwd, _ = u.User.Password()
	mc.Net = "tcp"
	mc.Addr = u.Host
	if u.Port() == "" {
		mc.Addr = net.JoinHostPort(u.Hostname(), "3306")
	}
	mc.DBName = c.target.database()
	mc.ParseTime = true
	mc.Loc = time.UTC
	mc.InterpolateParams = true
	mc.Logger = driverLogger{c.log}
	mc.Params = map[string]string{
		"innodb_lock_wait_timeout": strconv.FormatInt(max(1, int64(c.cfg.LockTimeout.Seconds())), 10),
		"time_zone":                "'+00:00'",
	}
	for k, vs := range u.Query() {
		if len(vs) == 0 {
			continue
		}
		switch k {
		case "charset":
			mc.Params["charset"] = vs[0]
		case "ssl", "tls":
			mc.TLSConfig = vs[0]
		default:
			mc.Params[k] = vs[0]
		}
	}
	return mc, nil
}

func (c *core) mysqlDB(mc *gomysql.Config) (*sql.DB, error) {
	conn, err := gomysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("sqlbackend: %w", redact.Error(err, c.cfg.URL))
	}
	return sql.OpenDB(conn), nil
}

// driverLogger sends go-sql-driver/mysql's messages (a dropped idle
// connection, for example) to the backend's logger at debug level,
// instead of the driver's default of standard error.
type driverLogger struct{ log *zap.Logger }

func (l driverLogger) Print(v ...any) { l.log.Debug("mysql driver: " + fmt.Sprint(v...)) }

// close closes the pool.
func (c *core) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.db != nil {
		return c.db.Close()
	}
	return nil
}

// exec runs one statement (written with ? placeholders), retrying
// transient errors as retry does; what names it in the error.
func (c *core) exec(ctx context.Context, what, q string, args ...any) error {
	db, err := c.conn(ctx)
	if err != nil {
		return err
	}
	q = c.sqlText(q)
	err = c.retry(ctx, what, func(ctx context.Context) error {
		_, err := db.ExecContext(ctx, q, args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlbackend: %s: %w", what, err)
	}
	return nil
}

// retry runs fn until it succeeds, fails with an error that is not
// transient, RetryFor has passed since the first failure, or ctx ends.
// Pauses grow from 50 ms to 2 s, with jitter.
func (c *core) retry(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	var deadline time.Time
	pause := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		now := time.Now()
		if deadline.IsZero() {
			deadline = now.Add(c.cfg.RetryFor)
		}
		if now.After(deadline) {
			return fmt.Errorf("%w (retried for %v)", err, c.cfg.RetryFor)
		}
		c.log.Warn("result backend operation failed, retrying",
			zap.String("op", what), zap.Int("attempt", attempt), zap.Duration("pause", pause), zap.Error(err))
		t := time.NewTimer(pause/2 + rand.N(pause/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		pause = min(pause*2, 2*time.Second)
	}
}

// transient reports whether err may go away if the operation is tried
// again: the connection was lost or refused, the server is shutting down
// or starting, a deadlock or a lock or statement timeout.
func transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03", "53300", "53400":
			return true
		case "0A000":
			// A table altered under a cached statement: pgx drops the
			// statement, and the next try prepares it again.
			return strings.Contains(pe.Message, "cached plan")
		}
		return strings.HasPrefix(pe.Code, "08")
	}
	var me *gomysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1205, 1213, 1969, 3024, 1040, 1053, 1317, 1927, 2006, 2013, 1152, 1158, 1159, 1160, 1161:
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	if errors.As(err, &ce) || errors.As(err, &ne) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, gomysql.ErrInvalidConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "conn closed") || strings.Contains(s, "connection reset") ||
		strings.Contains(s, "broken pipe") || strings.Contains(s, "server closed")
}

// createRace reports whether err is PostgreSQL's answer to two sessions
// creating the same table or sequence at once (unique violation in the
// catalog, duplicate table or object).
func createRace(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "42P07" || pe.Code == "42710")
}

// doesNotFit reports whether err says a value is too large for its
// column (a result beyond a MySQL BLOB's 64 KiB, a task name beyond
// VARCHAR(155)).
func doesNotFit(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "22001" || pe.Code == "22003" || pe.Code == "54000"
	}
	var me *gomysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1406 || me.Number == 1264 || me.Number == 1301
	}
	return false
}

// sqlText turns ? placeholders into the dialect's.
func (c *core) sqlText(q string) string {
	if c.target.dialect != postgres {
		return q
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// ident quotes an identifier, schema-qualified when schema is set.
func (c *core) ident(schema, name string) string {
	q := func(s string) string {
		if c.target.dialect == postgres {
			return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
		}
		return "`" + strings.ReplaceAll(s, "`", "``") + "`"
	}
	if schema != "" {
		return q(schema) + "." + q(name)
	}
	return q(name)
}

// placeholders returns "(?, ?, ...)" for n columns.
func placeholders(n int) string {
	return "(" + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + ")"
}

// inList returns "?, ?, ..." for n values.
func inList(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// utc returns t in UTC, truncated to the microsecond both servers keep.
func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"

	"github.com/gworker/gworker/protocol/pickle"
)

// results is where the workers of a run store their results: Redis, or
// the celery_taskmeta table of Celery's database backend on PostgreSQL.
type results interface {
	// watch starts following the results of ids (which share prefix)
	// before anything is published; onFirst runs when the first arrives.
	watch(ctx context.Context, prefix string, ids []string, onFirst func()) (waiter, error)
	// verify checks every stored result: SUCCESS and 2i.
	verify(ctx context.Context, prefix string, ids []string) error
	// remove deletes the run's results.
	remove(prefix string, ids []string)
}

type redisResults struct{ rdb *redis.Client }

func (r redisResults) watch(ctx context.Context, prefix string, ids []string, onFirst func()) (waiter, error) {
	return watchResults(ctx, r.rdb, prefix, ids, onFirst)
}

func (r redisResults) verify(ctx context.Context, _ string, ids []string) error {
	return verify(ctx, r.rdb, ids)
}

func (r redisResults) remove(_ string, ids []string) { deleteKeys(r.rdb, ids) }

// sqlResults reads celery_taskmeta. The window of a run is measured from
// the rows' date_done (the time each worker stored the result), so the
// polling interval does not change the figures; it only delays the start
// of the CPU window by up to one interval.
type sqlResults struct{ db *sql.DB }

// sqlPollInterval is how often the table is counted during a run.
const sqlPollInterval = 100 * time.Millisecond

func openSQLResults(ctx context.Context, backendURL string) (*sqlResults, error) {
	rest, ok := strings.CutPrefix(backendURL, "db+postgresql://")
	if !ok {
		return nil, fmt.Errorf("-result-backend %q: the bench reads db+postgresql:// backends only", backendURL)
	}
	if i := strings.Index(rest, "+"); i >= 0 && i < strings.Index(rest, "://") {
		rest = rest[strings.Index(rest, "://")+3:]
	}
	db, err := sql.Open("pgx", "postgres://"+rest)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("PostgreSQL of %s: %w (create the database first)", backendURL, err)
	}
	return &sqlResults{db: db}, nil
}

func (s *sqlResults) watch(ctx context.Context, prefix string, ids []string, onFirst func()) (waiter, error) {
	return &sqlWaiter{db: s.db, prefix: prefix, n: len(ids), onFirst: onFirst}, nil
}

type sqlWaiter struct {
	db      *sql.DB
	prefix  string
	n       int
	onFirst func()
}

func (w *sqlWaiter) close() {}

func (w *sqlWaiter) wait(ctx context.Context) (first, last time.Time, err error) {
	t := time.NewTicker(sqlPollInterval)
	defer t.Stop()
	seen := false
	for {
		var done, failed int
		var lo, hi sql.NullTime
		err := w.db.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE status = 'SUCCESS'), count(*) FILTER (WHERE status = 'FAILURE'),
			min(date_done) FILTER (WHERE status = 'SUCCESS'), max(date_done) FILTER (WHERE status = 'SUCCESS')
			FROM celery_taskmeta WHERE task_id LIKE $1`, w.prefix+"%").Scan(&done, &failed, &lo, &hi)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42P01" {
			err = nil // the first worker has not created the table yet
		}
		if err != nil {
			return first, last, fmt.Errorf("count results: %w", err)
		}
		if failed > 0 {
			return first, last, fmt.Errorf("%d tasks failed", failed)
		}
		if done > 0 && !seen {
			seen = true
			if w.onFirst != nil {
				w.onFirst()
			}
		}
		if done >= w.n {
			return lo.Time, hi.Time, nil
		}
		select {
		case <-ctx.Done():
			return first, last, fmt.Errorf("%d of %d results: %w", done, w.n, ctx.Err())
		case <-t.C:
		}
	}
}

func (s *sqlResults) verify(ctx context.Context, prefix string, ids []string) error {
	rows, err := s.db.QueryContext(ctx, "SELECT task_id, status, result FROM celery_taskmeta WHERE task_id LIKE $1", prefix+"%")
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer rows.Close()
	got := make(map[string]string, len(ids))
	for rows.Next() {
		var id, status string
		var res []byte
		if err := rows.Scan(&id, &status, &res); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		v, err := pickle.Unmarshal(res)
		if err != nil {
			return fmt.Errorf("verify: task %s: %w", id, err)
		}
		got[id] = fmt.Sprintf("%s %v", status, v)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	for i, id := range ids {
		if want := "SUCCESS " + expected(i); got[id] != want {
			return fmt.Errorf("verify: task %d (%s): want %s, stored %q", i, id, want, got[id])
		}
	}
	return nil
}

func (s *sqlResults) remove(prefix string, _ []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = s.db.ExecContext(ctx, "DELETE FROM celery_taskmeta WHERE task_id LIKE $1", prefix+"%")
}

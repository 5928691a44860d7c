// Package sqlbackend keeps task results in SQL databases, in the tables
// Python reads them from:
//
//   - db+postgresql://user:pass@host/db and db+mysql://... (Open): the
//     tables of Celery's SQLAlchemy database backend, celery_taskmeta and
//     celery_tasksetmeta, created as Celery's create_all creates them when
//     they are missing. The result column is a Python pickle, written and
//     read by package protocol/pickle, which reads data only.
//   - django-db+postgresql://... and django-db+mysql://... (OpenDjango):
//     the tables of django-celery-results 2.4, which Django's migrate
//     makes (gworker never creates them), with results as JSON text and
//     chords counted in its ChordCounter table.
//
// PostgreSQL is reached through pgx, MySQL and MariaDB through
// go-sql-driver/mysql, both through database/sql with a bounded pool,
// statement and lock timeouts set on every connection, and transient
// errors (a restarted server, a deadlock, a lock timeout) retried with
// growing pauses for Config.RetryFor. Concurrent Stores are written in
// multi-row upserts; a row whose status is SUCCESS is never overwritten.
//
// Neither table layout expires rows by itself: Cleanup deletes the rows
// finished more than Config.Expires ago, which is what Celery's
// celery.backend_cleanup task does (celery beat sends it daily at 4:00
// when result_expires is set, and a worker runs it).
//
// An App serves these URLs once the package is registered, which a
// program does itself so that one that keeps its results elsewhere does
// not carry the two database drivers:
//
//	app := gworker.New(cfg, gworker.WithResultBackend(sqlbackend.Register))
//
// Results are waited for by polling (WaitReady), many ids per query,
// with an interval that starts at Config.PollInterval and grows up to
// Config.MaxPollInterval while nothing changes.
package sqlbackend

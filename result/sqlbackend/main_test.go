package sqlbackend_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"

	"github.com/gworker/gworker/internal/testing/testenv"
	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/result"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The test servers: PostgreSQL (trust auth) and MariaDB (root, no
// password), overridable by GWORKER_TEST_POSTGRES and GWORKER_TEST_MYSQL
// (host:port). Tests fail, never skip, when they are unreachable.
func pgHost() string    { return getenv("GWORKER_TEST_POSTGRES", "127.0.0.1:5432") }
func mysqlHost() string { return getenv("GWORKER_TEST_MYSQL", "127.0.0.1:3306") }

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// server is one database server the tests run against.
type server struct {
	name string // "postgresql" or "mysql"
}

var servers = []server{{"postgresql"}, {"mysql"}}

// admin opens the server's maintenance database.
func (s server) admin(t testing.TB) *sql.DB {
	t.Helper()
	var db *sql.DB
	var err error
	if s.name == "postgresql" {
		db, err = sql.Open("pgx", "postgres://postgres@"+pgHost()+"/postgres")
	} else {
		db, err = sql.Open("mysql", "root@tcp("+mysqlHost()+")/?parseTime=true&loc=UTC")
	}
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// newDatabase creates a database for this test, dropped when it ends, and
// returns its name and a handle on it.
func (s server) newDatabase(t testing.TB) (string, *sql.DB) {
	t.Helper()
	name := "gw_" + strings.ReplaceAll(testenv.Suffix(), "-", "_")
	adm := s.admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := adm.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		adm.Close()
		t.Fatalf("create database on %s: %v", s.name, err)
	}
	var db *sql.DB
	var err error
	if s.name == "postgresql" {
		db, err = sql.Open("pgx", "postgres://postgres@"+pgHost()+"/"+name)
	} else {
		db, err = sql.Open("mysql", "root@tcp("+mysqlHost()+")/"+name+"?parseTime=true&loc=UTC")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		q := "DROP DATABASE " + name
		if s.name == "postgresql" {
			q += " WITH (FORCE)"
		}
		if _, err := adm.ExecContext(ctx, q); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
		adm.Close()
	})
	return name, db
}

// url returns the backend URL of database name with the given scheme
// prefix ("db" or "django-db").
func (s server) url(prefix, name string) string {
	if s.name == "postgresql" {
		return fmt.Sprintf("%s+postgresql://postgres@%s/%s", prefix, pgHost(), name)
	}
	return fmt.Sprintf("%s+mysql+pymysql://root@%s/%s", prefix, mysqlHost(), name)
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func done() *time.Time {
	now := time.Now().UTC().Truncate(time.Second)
	return &now
}

func success(id string, v any) *result.Meta {
	return &result.Meta{TaskID: id, Status: result.Success, Result: v, DateDone: done()}
}

func failure(id string, exc *protocol.Exception) *result.Meta {
	return &result.Meta{TaskID: id, Status: result.Failure, Result: exc, Traceback: "Traceback (most recent call last):\nKeyError: 'x'\n", DateDone: done()}
}

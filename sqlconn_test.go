package gworker

import (
	"errors"
	"testing"
	"time"

	"github.com/gworker/gworker/result/sqlbackend"
)

func TestSQLBackendURLs(t *testing.T) {
	for _, u := range []string{
		"db+postgresql://user:pw@db.example/app", "db+postgresql+psycopg2://u@h:5433/app",
		"db+mysql://root@127.0.0.1/app", "db+mysql+pymysql://u:p@h/app", "DB+PostgreSQL://u@h/app",
		"django-db+postgresql://u@h/app", "django-db+mysql://u@h/app",
	} {
		if _, err := NewApp(Config{ResultBackend: u}); err != nil {
			t.Errorf("NewApp(%s): %v", u, err)
		}
	}
	for _, u := range []string{"db+sqlite:///x.db", "db+postgresql://h", "django-db://h/app", "db+oracle://u@h/x"} {
		_, err := NewApp(Config{ResultBackend: u})
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewApp(%s) = %v, want ErrInvalidConfig", u, err)
		}
		if err := checkBackendURL(u); !errors.Is(err, ErrUnsupportedBackend) {
			t.Errorf("checkBackendURL(%s) = %v, want ErrUnsupportedBackend", u, err)
		}
	}
}

func TestDatabaseTablesChecked(t *testing.T) {
	if _, err := NewApp(Config{DatabaseTableNames: map[string]string{"task": "t", "group": "g"}, DatabaseTableSchemas: map[string]string{"task": "s"}}); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []Config{
		{DatabaseTableNames: map[string]string{"tasks": "t"}},
		{DatabaseTableSchemas: map[string]string{"group": ""}},
	} {
		if _, err := NewApp(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewApp(%v) = %v, want ErrInvalidConfig", cfg.DatabaseTableNames, err)
		}
	}
}

// TestOpenSQLBackend: the layout follows the scheme, and the App's result
// settings reach the backend. Nothing is contacted.
func TestOpenSQLBackend(t *testing.T) {
	cfg := Config{ResultExpires: time.Hour, DatabaseTableNames: map[string]string{"task": "t1", "group": "g1"}}
	b, closeFn, err := openSQLBackend(cfg, "db+postgresql://u@127.0.0.1/app", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	if _, ok := b.(*sqlbackend.Backend); !ok {
		t.Fatalf("db+ opened %T", b)
	}
	d, closeD, err := openSQLBackend(cfg, "django-db+mysql://u@127.0.0.1/app", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeD()
	if _, ok := d.(*sqlbackend.DjangoBackend); !ok {
		t.Fatalf("django-db+ opened %T", d)
	}
}

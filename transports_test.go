package gworker_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gworker/gworker"
	"github.com/gworker/gworker/result/sqlbackend"
	"github.com/gworker/gworker/transport"
)

// The URLs' schemes are checked against the App's registries: the default
// transports and backends, or the ones given with options.
func TestURLSchemesFollowTheRegistries(t *testing.T) {
	for _, u := range []string{"amqp://guest:guest@localhost:5672//", "pyamqp://h", "AMQPS://h", "redis://localhost:6379/0",
		"rediss://:pw@h:6380/1", "sentinel://h1:26379;sentinel://h2:26379"} {
		if _, err := gworker.NewApp(gworker.Config{BrokerURL: u}); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	_, err := gworker.NewApp(gworker.Config{BrokerURL: "sqs://user:topsecret@h"})
	if !errors.Is(err, gworker.ErrInvalidConfig) || !strings.Contains(err.Error(), gworker.ErrUnsupportedBroker.Error()) || strings.Contains(err.Error(), "topsecret") {
		t.Errorf("sqs://: %v", err)
	}
	for _, u := range []string{"redis://h/0", "rediss://h/0", "rpc://", "disabled://"} {
		if _, err := gworker.NewApp(gworker.Config{ResultBackend: u}); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	if _, err := gworker.NewApp(gworker.Config{ResultBackend: "mongodb://h"}); !errors.Is(err, gworker.ErrInvalidConfig) || !strings.Contains(err.Error(), gworker.ErrUnsupportedBackend.Error()) {
		t.Errorf("mongodb://: %v", err)
	}
	// A transport of one's own: its scheme is accepted, and only it.
	reg := transport.NewRegistry()
	reg.Register(func(context.Context, string, transport.Options) (transport.Broker, error) {
		return nil, errors.New("not dialled in this test")
	}, "sqs")
	if _, err := gworker.NewApp(gworker.Config{BrokerURL: "sqs://h"}, gworker.WithTransports(reg)); err != nil {
		t.Errorf("sqs:// with its transport registered: %v", err)
	}
	if _, err := gworker.NewApp(gworker.Config{BrokerURL: "amqp://h"}, gworker.WithTransports(reg)); err == nil {
		t.Error("amqp:// accepted by an App whose registry has only sqs")
	}
}

func TestSQLBackendURLs(t *testing.T) {
	for _, u := range []string{
		"db+postgresql://user:pw@db.example/app", "db+postgresql+psycopg2://u@h:5433/app",
		"db+mysql://root@127.0.0.1/app", "db+mysql+pymysql://u:p@h/app", "DB+PostgreSQL://u@h/app",
		"django-db+postgresql://u@h/app", "django-db+mysql://u@h/app",
	} {
		if _, err := gworker.NewApp(gworker.Config{ResultBackend: u}, gworker.WithResultBackend(sqlbackend.Register)); err != nil {
			t.Errorf("NewApp(%s): %v", u, err)
		}
		// Not registered: refused, with the way to register them.
		_, err := gworker.NewApp(gworker.Config{ResultBackend: u})
		if !errors.Is(err, gworker.ErrInvalidConfig) || !strings.Contains(err.Error(), gworker.ErrUnsupportedBackend.Error()) ||
			!strings.Contains(err.Error(), "gworker.WithResultBackend(sqlbackend.Register)") {
			t.Errorf("NewApp(%s) without the SQL backends = %v, want ErrInvalidConfig naming sqlbackend.Register", u, err)
		}
	}
	for _, u := range []string{"db+sqlite:///x.db", "db+postgresql://h", "django-db://h/app", "db+oracle://u@h/x"} {
		_, err := gworker.NewApp(gworker.Config{ResultBackend: u}, gworker.WithResultBackend(sqlbackend.Register))
		if !errors.Is(err, gworker.ErrInvalidConfig) || !strings.Contains(err.Error(), gworker.ErrUnsupportedBackend.Error()) {
			t.Errorf("NewApp(%s) = %v, want ErrInvalidConfig for an unsupported backend", u, err)
		}
	}
}

func TestDatabaseTablesChecked(t *testing.T) {
	if _, err := gworker.NewApp(gworker.Config{DatabaseTableNames: map[string]string{"task": "t", "group": "g"},
		DatabaseTableSchemas: map[string]string{"task": "s"}}); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []gworker.Config{
		{DatabaseTableNames: map[string]string{"tasks": "t"}},
		{DatabaseTableSchemas: map[string]string{"group": ""}},
	} {
		if _, err := gworker.NewApp(cfg); !errors.Is(err, gworker.ErrInvalidConfig) {
			t.Errorf("NewApp(%v) = %v, want ErrInvalidConfig", cfg.DatabaseTableNames, err)
		}
	}
}

// A nil registration adds nothing and breaks nothing.
func TestNilResultBackendRegistration(t *testing.T) {
	if _, err := gworker.NewApp(gworker.Config{ResultBackend: "redis://h:6379/0"}, gworker.WithResultBackend(nil)); err != nil {
		t.Fatal(err)
	}
}

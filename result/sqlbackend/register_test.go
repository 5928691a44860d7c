package sqlbackend_test

import (
	"context"
	"testing"
	"time"

	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/sqlbackend"
)

// The layout follows the scheme, a +driver suffix reaches the backend
// through the registry, and the App's table settings reach it. Nothing is
// contacted.
func TestRegistryOpensSQLBackends(t *testing.T) {
	r := result.NewRegistry()
	sqlbackend.Register(r)
	o := result.OpenOptions{Expires: time.Hour, TableNames: map[string]string{"task": "t1", "group": "g1"}}
	for url, want := range map[string]string{
		"db+postgresql://u@127.0.0.1/app":         "*sqlbackend.Backend",
		"db+mysql+pymysql://u@127.0.0.1/app":      "*sqlbackend.Backend",
		"django-db+mysql://u@127.0.0.1/app":       "*sqlbackend.DjangoBackend",
		"django-db+postgresql+psycopg2://u@h/app": "*sqlbackend.DjangoBackend",
	} {
		if err := r.Check(url); err != nil {
			t.Errorf("Check(%s): %v", url, err)
		}
		b, err := r.Open(context.Background(), url, o)
		if err != nil {
			t.Fatalf("Open(%s): %v", url, err)
		}
		var got string
		switch x := b.(type) {
		case *sqlbackend.Backend:
			got = "*sqlbackend.Backend"
			x.Close()
		case *sqlbackend.DjangoBackend:
			got = "*sqlbackend.DjangoBackend"
			x.Close()
		}
		if got != want {
			t.Errorf("%s opened %T, want %s", url, b, want)
		}
	}
	if err := r.Check("db+postgresql://h"); err == nil {
		t.Error("a URL without a database passed the check")
	}
}

package gworker

import (
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/sqlbackend"
)

// isSQLBackend reports whether a result backend URL names one of the SQL
// backends: Celery's database tables (db+postgresql://, db+mysql://) or
// django-celery-results' (django-db+postgresql://, django-db+mysql://).
func isSQLBackend(raw string) bool {
	s := schemeOf(raw)
	return strings.HasPrefix(s, "db+") || strings.HasPrefix(s, "django-db+")
}

func checkSQLBackendURL(raw string) error {
	if _, err := sqlbackend.LayoutOf(raw); err != nil {
		return fmt.Errorf("result backend %s: %w: %w", RedactURL(raw), ErrUnsupportedBackend, err)
	}
	return nil
}

// openSQLBackend opens the SQL result backend of url with the App's
// result settings; the pool opens on first use.
func openSQLBackend(cfg Config, url string, log *zap.Logger) (result.Backend, func() error, error) {
	sc := sqlbackend.Config{
		URL:         url,
		Expires:     cfg.ResultExpires,
		TaskTable:   cfg.DatabaseTableNames["task"],
		GroupTable:  cfg.DatabaseTableNames["group"],
		TaskSchema:  cfg.DatabaseTableSchemas["task"],
		GroupSchema: cfg.DatabaseTableSchemas["group"],
		Logger:      log,
	}
	layout, err := sqlbackend.LayoutOf(url)
	if err != nil {
		return nil, nil, err
	}
	if layout == sqlbackend.LayoutDjango {
		b, err := sqlbackend.OpenDjango(sc)
		if err != nil {
			return nil, nil, err
		}
		return b, b.Close, nil
	}
	b, err := sqlbackend.Open(sc)
	if err != nil {
		return nil, nil, err
	}
	return b, b.Close, nil
}

// checkDatabaseTables reports keys of DatabaseTableNames and
// DatabaseTableSchemas other than Celery's "task" and "group".
func checkDatabaseTables(c Config) []string {
	var p []string
	for field, m := range map[string]map[string]string{"DatabaseTableNames": c.DatabaseTableNames, "DatabaseTableSchemas": c.DatabaseTableSchemas} {
		for k, v := range m {
			if k != "task" && k != "group" {
				p = append(p, fmt.Sprintf("%s[%q]: keys are \"task\" and \"group\"", field, k))
			} else if v == "" {
				p = append(p, fmt.Sprintf("%s[%q] is empty", field, k))
			}
		}
	}
	return p
}

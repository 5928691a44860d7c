package sqlbackend

import (
	"context"

	"github.com/gworker/gworker/result"
)

// Schemes are the result backend URL schemes of the SQL backends: Celery's
// database tables (db+) and django-celery-results' (django-db+). A
// +driver suffix (db+mysql+pymysql://) reaches them through the registry.
var Schemes = []string{"db+postgresql", "db+mysql", "db+mariadb", "django-db+postgresql", "django-db+mysql", "django-db+mariadb"}

// OpenBackend is the result.Opener of the SQL backends: the layout follows
// the scheme, the tables and schemas come from o.TableNames and
// o.TableSchemas ("task" and "group"), and the pool opens on first use.
func OpenBackend(_ context.Context, url string, o result.OpenOptions) (result.Backend, error) {
	cfg := Config{
		URL:         url,
		Expires:     o.Expires,
		NoExpiry:    o.Expires < 0,
		TaskTable:   o.TableNames["task"],
		GroupTable:  o.TableNames["group"],
		TaskSchema:  o.TableSchemas["task"],
		GroupSchema: o.TableSchemas["group"],
		Logger:      o.Logger,
	}
	layout, err := LayoutOf(url)
	if err != nil {
		return nil, err
	}
	if layout == LayoutDjango {
		b, err := OpenDjango(cfg)
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	b, err := Open(cfg)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// checkURL is the registry's Checker: the URL must name a database on a
// server of a known kind.
func checkURL(url string) error {
	_, err := LayoutOf(url)
	return err
}

// Register registers OpenBackend for Schemes in r.
func Register(r *result.Registry) { r.RegisterChecked(OpenBackend, checkURL, Schemes...) }

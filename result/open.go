package result

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gworker/gworker/internal/schemes"
	"github.com/gworker/gworker/transport"
)

// OpenOptions are what a backend Opener may use besides the URL.
type OpenOptions struct {
	// Broker is the App's broker connection, for backends that travel on
	// it (rpc://).
	Broker transport.Broker
	// Worker is true for the backend of a worker, which stores the
	// results of the tasks it runs, and false for a client's, which reads
	// them.
	Worker bool
	// ReplyTo is the client id a client's producer writes as reply_to
	// (rpc://).
	ReplyTo string
	// Expires is how long stored results live (result_expires); 0 is the
	// backend's default, a negative value keeps them forever.
	Expires time.Duration
	// Logger receives the backend's log lines; nil logs nothing.
	Logger *zap.Logger
	// TableNames and TableSchemas rename the tables of the SQL backends
	// (Celery's database_table_names and database_table_schemas, keys
	// "task" and "group"); other backends ignore them.
	TableNames, TableSchemas map[string]string
}

// Opener opens the result backend of url.
type Opener func(ctx context.Context, url string, o OpenOptions) (Backend, error)

// Checker tells, without connecting, whether url is one its backend can
// open (a database name is given, the driver is known, ...).
type Checker func(url string) error

// ErrUnsupportedBackend: no backend is registered for the URL's scheme.
var ErrUnsupportedBackend = errors.New("unsupported result backend")

// Registry maps URL schemes to the Openers of result backends. Use
// NewRegistry; a filled Registry is safe for concurrent Open.
type Registry struct {
	openers *schemes.Table[entry]
}

type entry struct {
	open  Opener
	check Checker
}

// NewRegistry returns an empty Registry. A scheme also serves its variants
// with a "+driver" suffix, as SQLAlchemy's URLs name drivers (db+mysql
// serves db+mysql+pymysql://), unless the variant is registered itself.
func NewRegistry() *Registry { return &Registry{openers: schemes.New[entry](true)} }

// Register makes open serve URLs of each of the schemes (case does not
// matter); a later registration of a scheme replaces the earlier one.
func (r *Registry) Register(open Opener, schemes ...string) {
	r.RegisterChecked(open, nil, schemes...)
}

// RegisterChecked is Register with a Checker that Check runs on URLs of
// the schemes.
func (r *Registry) RegisterChecked(open Opener, check Checker, schemes ...string) {
	r.openers.Set(entry{open: open, check: check}, schemes...)
}

// Check reports whether url can be opened, without connecting: an
// unknown scheme is ErrUnsupportedBackend, and the scheme's Checker, if
// it has one, judges the rest.
func (r *Registry) Check(url string) error {
	e, ok := r.openers.Lookup(url)
	if !ok {
		return r.unsupported(url)
	}
	if e.check != nil {
		if err := e.check(url); err != nil {
			return fmt.Errorf("%w: %w", ErrUnsupportedBackend, err)
		}
	}
	return nil
}

func (r *Registry) unsupported(url string) error {
	scheme := schemes.Of(url)
	if strings.HasPrefix(scheme, "db+") || strings.HasPrefix(scheme, "django-db+") {
		return fmt.Errorf("%w: scheme %q is served by package %s, which this program does not register (%s): "+
			"add it with gworker.WithResultBackend(sqlbackend.Register)", ErrUnsupportedBackend, scheme, sqlPackage, r.openers.List())
	}
	return fmt.Errorf("%w: scheme %q (%s)", ErrUnsupportedBackend, scheme, r.openers.List())
}

// sqlPackage is the import path of the SQL backends, which programs
// register themselves.
const sqlPackage = "github.com/gworker/gworker/result/sqlbackend"

// Schemes lists the registered schemes, sorted.
func (r *Registry) Schemes() []string { return r.openers.Names() }

// Supports reports whether url's scheme has a backend.
func (r *Registry) Supports(url string) bool {
	_, ok := r.openers.Lookup(url)
	return ok
}

// Open opens the backend registered for url's scheme; an unknown scheme is
// ErrUnsupportedBackend.
func (r *Registry) Open(ctx context.Context, url string, o OpenOptions) (Backend, error) {
	e, ok := r.openers.Lookup(url)
	if !ok {
		return nil, r.unsupported(url)
	}
	return e.open(ctx, url, o)
}

package result

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

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
}

// Opener opens the result backend of url.
type Opener func(ctx context.Context, url string, o OpenOptions) (Backend, error)

// ErrUnsupportedBackend: no backend is registered for the URL's scheme.
var ErrUnsupportedBackend = errors.New("unsupported result backend")

// Registry maps URL schemes to the Openers of result backends. Use
// NewRegistry; a filled Registry is safe for concurrent Open.
type Registry struct {
	openers map[string]Opener
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry { return &Registry{openers: map[string]Opener{}} }

// Register makes open serve URLs of each of the schemes (case does not
// matter); a later registration of a scheme replaces the earlier one.
func (r *Registry) Register(open Opener, schemes ...string) {
	for _, s := range schemes {
		r.openers[strings.ToLower(s)] = open
	}
}

// Schemes lists the registered schemes, sorted.
func (r *Registry) Schemes() []string {
	out := make([]string, 0, len(r.openers))
	for s := range r.openers {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Supports reports whether url's scheme has a backend.
func (r *Registry) Supports(url string) bool {
	_, ok := r.openers[transport.Scheme(url)]
	return ok
}

// Open opens the backend registered for url's scheme; an unknown scheme is
// ErrUnsupportedBackend.
func (r *Registry) Open(ctx context.Context, url string, o OpenOptions) (Backend, error) {
	open, ok := r.openers[transport.Scheme(url)]
	if !ok {
		s := r.Schemes()
		for i := range s {
			s[i] += "://"
		}
		return nil, fmt.Errorf("%w: scheme %q (%s)", ErrUnsupportedBackend, transport.Scheme(url), strings.Join(s, ", "))
	}
	return open(ctx, url, o)
}

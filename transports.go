package gworker

import (
	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/redistransport"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
	"github.com/gworker/gworker/result/rpcbackend"
	"github.com/gworker/gworker/result/sqlbackend"
	"github.com/gworker/gworker/transport"
	"github.com/gworker/gworker/worker"
)

// DefaultTransports returns a new registry of the brokers gworker speaks:
// RabbitMQ (amqp://, amqps://, pyamqp://) and kombu's Redis transport
// (redis://, rediss://, sentinel://). This is the one place they are
// registered; add a transport of your own to the registry and give it to
// the App with WithTransports.
func DefaultTransports() *transport.Registry {
	r := transport.NewRegistry()
	amqptransport.Register(r)
	redistransport.Register(r)
	return r
}

// DefaultResultBackends returns a new registry of the result backends
// gworker has: Redis (redis://, rediss://), rpc:// (replies on the AMQP
// broker), and the SQL backends: Celery's database tables (db+postgresql://,
// db+mysql://) and django-celery-results' (django-db+postgresql://,
// django-db+mysql://). disabled:// is understood by the App itself: no
// backend.
func DefaultResultBackends() *result.Registry {
	r := result.NewRegistry()
	redisbackend.Register(r)
	rpcbackend.Register(r)
	sqlbackend.Register(r)
	return r
}

// registries are the App's transports and result backends, and the
// middleware its Options gave it.
type registries struct {
	transports *transport.Registry
	backends   *result.Registry
	middleware []worker.Middleware
	publish    []producer.Middleware
}

// An Option changes what an App is built with, beside its Config.
type Option func(*registries)

// WithTransports gives the App the brokers of r instead of
// DefaultTransports(): register a transport of your own in it.
func WithTransports(r *transport.Registry) Option {
	return func(g *registries) { g.transports = r }
}

// WithResultBackends gives the App the result backends of r instead of
// DefaultResultBackends().
func WithResultBackends(r *result.Registry) Option {
	return func(g *registries) { g.backends = r }
}

// WithMiddleware wraps the running of every task the App's worker runs in
// mw, the first one outermost: Celery's task_prerun, task_postrun and
// task_failure signals, for tracing, error reporting or audit logs. See
// worker.Middleware.
func WithMiddleware(mw ...worker.Middleware) Option {
	return func(g *registries) { g.middleware = append(g.middleware, mw...) }
}

// WithPublishMiddleware wraps every message the App publishes in mw, the
// first one outermost: tasks it sends, and the callbacks, chain links,
// chord bodies, errbacks and retries its worker sends after a task (Celery's
// before_task_publish and after_task_publish signals). See
// producer.Middleware.
func WithPublishMiddleware(mw ...producer.Middleware) Option {
	return func(g *registries) { g.publish = append(g.publish, mw...) }
}

func newRegistries(opts []Option) registries {
	g := registries{}
	for _, o := range opts {
		o(&g)
	}
	if g.transports == nil {
		g.transports = DefaultTransports()
	}
	if g.backends == nil {
		g.backends = DefaultResultBackends()
	}
	return g
}

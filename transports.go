package gworker

import (
	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/producer"
	"github.com/gworker/gworker/redistransport"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
	"github.com/gworker/gworker/result/rpcbackend"
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
// every program gets: Redis (redis://, rediss://) and rpc:// (replies on
// the AMQP broker). disabled:// is understood by the App itself: no
// backend.
//
// The SQL backends, Celery's database tables (db+postgresql://,
// db+mysql://) and django-celery-results' (django-db+postgresql://,
// django-db+mysql://), are an opt-in, as they are in Celery (its
// sqlalchemy extra) and as database/sql's drivers are: they bring two
// database drivers into the program, which a worker that keeps its
// results in Redis would carry for nothing. A program that wants them
// registers them:
//
//	app := gworker.New(cfg, gworker.WithResultBackend(sqlbackend.Register))
//
// Without them, a db+ or django-db+ URL is refused at start with an
// ErrUnsupportedBackend that says so. Command gworker has them.
func DefaultResultBackends() *result.Registry {
	r := result.NewRegistry()
	redisbackend.Register(r)
	rpcbackend.Register(r)
	return r
}

// registries are the App's transports and result backends, and the
// middleware its Options gave it.
type registries struct {
	transports *transport.Registry
	backends   *result.Registry
	extra      []func(*result.Registry)
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

// WithResultBackend registers more result backends beside the App's
// (DefaultResultBackends, or those of WithResultBackends): register is a
// package's Register function, such as sqlbackend.Register for Celery's
// and django-celery-results' SQL tables. A nil function is skipped.
func WithResultBackend(register ...func(*result.Registry)) Option {
	return func(g *registries) { g.extra = append(g.extra, register...) }
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
	for _, register := range g.extra {
		if register != nil {
			register(g.backends)
		}
	}
	return g
}

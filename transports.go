package gworker

import (
	"github.com/gworker/gworker/amqptransport"
	"github.com/gworker/gworker/redistransport"
	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/result/redisbackend"
	"github.com/gworker/gworker/result/rpcbackend"
	"github.com/gworker/gworker/transport"
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
// gworker has: Redis (redis://, rediss://) and rpc:// (replies on the AMQP
// broker). disabled:// is understood by the App itself: no backend.
func DefaultResultBackends() *result.Registry {
	r := result.NewRegistry()
	redisbackend.Register(r)
	rpcbackend.Register(r)
	return r
}

// registries are the App's transports and result backends.
type registries struct {
	transports *transport.Registry
	backends   *result.Registry
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

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
// the App as Config.Transports.
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

// transports is the App's transport registry.
func (c Config) transports() *transport.Registry {
	if c.Transports != nil {
		return c.Transports
	}
	return DefaultTransports()
}

// backends is the App's result backend registry.
func (c Config) backends() *result.Registry {
	if c.ResultBackends != nil {
		return c.ResultBackends
	}
	return DefaultResultBackends()
}

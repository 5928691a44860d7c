package transport_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/gworker/gworker/transport"
)

// A registry maps URL schemes to transports; the App opens its broker
// through one (gworker.DefaultTransports registers RabbitMQ and Redis).
func ExampleRegistry() {
	reg := transport.NewRegistry()
	reg.Register(func(ctx context.Context, url string, o transport.Options) (transport.Broker, error) {
		return nil, fmt.Errorf("would dial %s as %s", url, o.ConnectionName)
	}, "mybroker", "mybrokers")

	fmt.Println(reg.Schemes(), reg.Supports("MYBROKER://host"), reg.Supports("amqp://host"))
	_, err := reg.Open(context.Background(), "mybroker://host", transport.Options{ConnectionName: "gworker@host"})
	fmt.Println(err)
	_, err = reg.Open(context.Background(), "sqs://queue", transport.Options{})
	fmt.Println(errors.Is(err, transport.ErrUnsupportedScheme))
	// Output:
	// [mybroker mybrokers] true false
	// would dial mybroker://host as gworker@host
	// true
}

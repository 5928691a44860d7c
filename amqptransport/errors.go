package amqptransport

import (
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Sentinel errors. Errors returned by the package wrap one of these (or an
// *amqp.Error from the broker), so callers can test them with errors.Is and
// errors.As.
var (
	// ErrClosed is returned by operations on a Broker or Consumer that has
	// been closed.
	ErrClosed = errors.New("amqptransport: closed")

	// ErrStaleDelivery is returned by Delivery.Ack and Delivery.Reject when
	// the channel the delivery arrived on is gone (connection lost, channel
	// closed by the broker, consumer closed). Nothing is sent: the broker
	// has already requeued the message, and acknowledging its old delivery
	// tag on a new channel would settle a different message.
	ErrStaleDelivery = errors.New("amqptransport: delivery belongs to a closed channel; the broker requeued it")

	// ErrAlreadySettled is returned by a second Ack or Reject of the same
	// delivery. Nothing is sent: RabbitMQ closes the channel on a double
	// acknowledgement, which would requeue every other unacked message.
	ErrAlreadySettled = errors.New("amqptransport: delivery already acknowledged or rejected")

	// ErrNoAck is returned by Ack and Reject on deliveries of a consumer
	// started with NoAck: the broker settled them on delivery.
	ErrNoAck = errors.New("amqptransport: consumer runs without acknowledgements")

	// ErrNacked is returned by Publish when the broker answered the publish
	// with basic.nack (an internal error on the broker side).
	ErrNacked = errors.New("amqptransport: publish nacked by the broker")

	// ErrReturned is wrapped by *ReturnError: a mandatory message could not
	// be routed to any queue.
	ErrReturned = errors.New("amqptransport: message returned by the broker")

	// ErrInvalidMessage is returned when a message cannot be put on the wire:
	// a header value of an unsupported type, a key or property longer than
	// 255 bytes.
	ErrInvalidMessage = errors.New("amqptransport: invalid message")

	// ErrInvalidConfig is returned by Dial and NewConsumer for a bad
	// configuration.
	ErrInvalidConfig = errors.New("amqptransport: invalid configuration")
)

// ReturnError tells why the broker returned a mandatory message
// (basic.return), typically 312 NO_ROUTE.
type ReturnError struct {
	Code       uint16
	Text       string
	Exchange   string
	RoutingKey string
}

func (e *ReturnError) Error() string {
	return fmt.Sprintf("amqptransport: message to exchange %q with routing key %q returned: %d %s",
		e.Exchange, e.RoutingKey, e.Code, e.Text)
}

// Unwrap returns ErrReturned.
func (e *ReturnError) Unwrap() error { return ErrReturned }

// isConnectionLevel reports whether a close error means the whole connection
// is gone (as opposed to a channel-level error on a live connection).
func isConnectionLevel(e *amqp.Error) bool {
	if e == nil {
		return true
	}
	switch e.Code {
	case amqp.ContentTooLarge, amqp.NoRoute, amqp.NoConsumers, amqp.AccessRefused,
		amqp.NotFound, amqp.ResourceLocked, amqp.PreconditionFailed:
		return false
	}
	return true
}

// isFrameSyntaxClose reports whether a connection died because amqp091-go
// could not parse a frame the broker sent: the signature of a poison header
// (field type 'L' written by py-amqp) rather than of a network failure.
func isFrameSyntaxClose(e *amqp.Error) bool {
	if e == nil || e.Server {
		return false
	}
	switch e.Code {
	case amqp.SyntaxError:
		return true
	case amqp.FrameError:
		return e.Reason == amqp.ErrSyntax.Error() || e.Reason == amqp.ErrFrame.Error() ||
			e.Reason == amqp.ErrSyntax.Reason || e.Reason == amqp.ErrFrame.Reason
	}
	return false
}

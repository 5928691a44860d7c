package redistransport

import "errors"

// Sentinel errors. Errors returned by the package wrap one of these (or a
// go-redis error), so callers can test them with errors.Is.
var (
	// ErrClosed is returned by operations on a closed Broker or Consumer.
	ErrClosed = errors.New("redistransport: closed")

	// ErrInvalidConfig is returned by Dial and NewConsumer for a bad
	// configuration.
	ErrInvalidConfig = errors.New("redistransport: invalid configuration")

	// ErrAlreadySettled is returned by a second Ack or Reject of a
	// delivery.
	ErrAlreadySettled = errors.New("redistransport: delivery already acknowledged or rejected")

	// ErrStaleDelivery is returned by Ack and Reject of a delivery whose
	// consumer has been closed: the message was restored to its queue
	// (or its unacknowledged entry is gone, restored by another consumer
	// after the visibility timeout) and will be delivered again.
	ErrStaleDelivery = errors.New("redistransport: delivery no longer owned; it was restored to its queue")

	// ErrNoRoute is returned by Publish when the exchange has no binding
	// for the routing key (kombu would drop the message silently).
	ErrNoRoute = errors.New("redistransport: no queue bound for the routing key")

	// ErrBadEnvelope is wrapped by errors about a message that is not a
	// kombu envelope; such messages are moved to the dead-letter list.
	ErrBadEnvelope = errors.New("redistransport: bad envelope")

	// ErrInvalidMessage is returned by Publish for a message that cannot be
	// written (a header value JSON cannot carry).
	ErrInvalidMessage = errors.New("redistransport: invalid message")
)

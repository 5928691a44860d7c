package amqptransport

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/gworker/gworker/config"
)

// Queue types (the x-queue-type queue argument), as Celery 5.5's
// task_default_queue_type names them.
const (
	QueueTypeClassic = config.QueueTypeClassic
	QueueTypeQuorum  = config.QueueTypeQuorum
	// QueueTypeStream is recognized on queues found on the broker; gworker
	// never creates streams.
	QueueTypeStream = "stream"
)

// QuorumPrefetchMax is the largest per-consumer prefetch count used on a
// quorum queue: RabbitMQ's documentation gives 2000 as the cap above which
// quorum queue consumers gain nothing, and a larger window only holds more
// messages unacknowledged in one worker.
const QuorumPrefetchMax = 2000

// queueArgType returns the x-queue-type of declaration arguments, classic
// when absent.
func queueArgType(args map[string]any) string {
	if s, ok := args["x-queue-type"].(string); ok && s != "" {
		return s
	}
	return QueueTypeClassic
}

// inequivalentRe reads the broker's PRECONDITION_FAILED text for a
// redeclaration with another x-queue-type, e.g. "inequivalent arg
// 'x-queue-type' for queue 'q' in vhost '/': received none but current is
// the value 'quorum' of type 'longstr'". Compiled on first use: only a
// refused declaration needs it, and a worker should not pay for it at
// start.
var inequivalentRe = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`inequivalent arg 'x-queue-type' .* but current is (?:the value '([a-z]+)'|none)`)
})

// typeFromMismatch returns the queue type the broker reports in a
// PRECONDITION_FAILED about x-queue-type, or "" when the text is about
// another argument.
func typeFromMismatch(reason string) string {
	m := inequivalentRe().FindStringSubmatch(reason)
	if m == nil {
		return ""
	}
	if m[1] == "" {
		return QueueTypeClassic
	}
	return m[1]
}

// declared is what declaring (or adopting) a queue found out.
type declared struct {
	// typ is the queue's type; "" when it existed with other arguments
	// than ours and the broker's answer did not tell its type.
	typ string
	// adopted is true when the queue existed with other arguments and is
	// used as it is.
	adopted bool
	// reason is the broker's refusal of our arguments when adopted.
	reason string
	// exchangeType is the type of the queue's exchange: the one declared,
	// or the one the broker has when it refused ours; "" when neither is
	// known (or the queue is on the default exchange).
	exchangeType string
}

// exchangeTypeRe reads the broker's PRECONDITION_FAILED text for an
// exchange redeclared with another type, e.g. "inequivalent arg 'type' for
// exchange 'x' in vhost '/': received 'direct' but current is 'topic'".
// Compiled on first use, as inequivalentRe.
var exchangeTypeRe = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`inequivalent arg 'type' for exchange .* but current is '([a-z-]+)'`)
})

// exchangeTypeFromRefusal returns the type of an exchange whose
// declaration as wanted the broker refused with reason: the type it
// reports, wanted when the refusal is about another argument (the broker
// compares the type first), "" when the text says neither.
func exchangeTypeFromRefusal(reason, wanted string) string {
	if m := exchangeTypeRe().FindStringSubmatch(reason); m != nil {
		return m[1]
	}
	if strings.Contains(reason, "inequivalent arg '") {
		return wanted
	}
	return ""
}

// declareOrAdopt declares q, each step on a channel of its own so that a
// refusal does not close the caller's channel. A queue that already exists
// with other arguments (another x-queue-type, a dead-letter exchange, a
// delivery limit, ...) is adopted: its existence is checked passively, it
// is bound as q says, and what the broker answered is logged (once per
// queue and answer, not again on every reconnect), instead of failing like
// a kombu redeclaration does.
func (b *Broker) declareOrAdopt(ctx context.Context, conn *amqp.Connection, q Queue) (declared, error) {
	ch, err := conn.Channel()
	if err != nil {
		return declared{}, fmt.Errorf("amqptransport: open channel: %w", err)
	}
	err = withContext(ctx, ch, func() error { return declareOn(ch, q) })
	_ = ch.Close()
	xtype := ""
	if q.Exchange != "" {
		xtype = q.ExchangeType
		if xtype == "" {
			xtype = "direct"
		}
	}
	if isExchangePrecondition(err) {
		// The queue's exchange exists with another type or flags (a
		// topic exchange of a Celery 5.5 app, say): adopt it as queues
		// are adopted, then declare the queue again.
		typ := xtype
		if err := b.adoptExchange(ctx, conn, q.Exchange, typ, err); err != nil {
			return declared{}, err
		}
		var ae *amqp.Error
		errors.As(err, &ae)
		xtype = exchangeTypeFromRefusal(ae.Reason, typ)
		q.adoptExchange = true
		if ch, err = conn.Channel(); err != nil {
			return declared{}, fmt.Errorf("amqptransport: open channel: %w", err)
		}
		err = withContext(ctx, ch, func() error { return declareOn(ch, q) })
		_ = ch.Close()
	}
	if err == nil {
		return declared{typ: queueArgType(q.Arguments), exchangeType: xtype}, nil
	}
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed || !isQueueDeclareErr(err) {
		return declared{}, err
	}
	ch, err = conn.Channel()
	if err != nil {
		return declared{}, fmt.Errorf("amqptransport: open channel: %w", err)
	}
	defer ch.Close()
	err = withContext(ctx, ch, func() error {
		if _, err := ch.QueueDeclarePassive(q.Name, q.Durable, q.AutoDelete, q.Exclusive, false, nil); err != nil {
			return fmt.Errorf("amqptransport: queue %q: %w", q.Name, err)
		}
		if q.Exchange != "" {
			if err := ch.QueueBind(q.Name, q.RoutingKey, q.Exchange, false, nil); err != nil {
				return fmt.Errorf("amqptransport: bind queue %q to %q: %w", q.Name, q.Exchange, err)
			}
		}
		return nil
	})
	if err != nil {
		return declared{}, err
	}
	d := declared{typ: typeFromMismatch(ae.Reason), adopted: true, reason: ae.Reason, exchangeType: xtype}
	b.mu.Lock()
	seen := b.adopted[q.Name] == ae.Reason
	b.adopted[q.Name] = ae.Reason
	b.mu.Unlock()
	if seen {
		return d, nil
	}
	found := d.typ
	if found == "" {
		found = "unknown"
	}
	b.log.Warn("queue exists with other arguments than gworker declares; using it as the broker has it",
		zap.String("queue", q.Name), zap.String("queue_type", found),
		zap.String("wanted_type", queueArgType(q.Arguments)), zap.String("broker", ae.Reason))
	return d, nil
}

// queueDeclareError marks a failure of the queue.declare step of declareOn.
type queueDeclareError struct{ err error }

func (e *queueDeclareError) Error() string { return e.err.Error() }
func (e *queueDeclareError) Unwrap() error { return e.err }

func isQueueDeclareErr(err error) bool {
	var qe *queueDeclareError
	return errors.As(err, &qe)
}

// exchangeDeclareError marks a failure of an exchange.declare.
type exchangeDeclareError struct{ err error }

func (e *exchangeDeclareError) Error() string { return e.err.Error() }
func (e *exchangeDeclareError) Unwrap() error { return e.err }

// isExchangePrecondition reports an exchange.declare the broker refused
// because the exchange exists with another type or flags.
func isExchangePrecondition(err error) bool {
	var xe *exchangeDeclareError
	var ae *amqp.Error
	return errors.As(err, &xe) && errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed
}

// adoptExchange checks that the exchange refused by refusal exists
// (passive declaration) and logs once what the broker has: an exchange is
// used as it exists, as Celery's worker uses what its app declared.
func (b *Broker) adoptExchange(ctx context.Context, conn *amqp.Connection, name, wanted string, refusal error) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("amqptransport: open channel: %w", err)
	}
	defer ch.Close()
	err = withContext(ctx, ch, func() error {
		if err := ch.ExchangeDeclarePassive(name, wanted, false, false, false, false, nil); err != nil {
			return fmt.Errorf("amqptransport: exchange %q: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	var ae *amqp.Error
	errors.As(refusal, &ae)
	key := "exchange " + name
	b.mu.Lock()
	seen := b.adopted[key] == ae.Reason
	b.adopted[key] = ae.Reason
	b.mu.Unlock()
	if !seen {
		b.log.Warn("exchange exists with another type or flags than gworker declares; using it as the broker has it",
			zap.String("exchange", name), zap.String("wanted_type", wanted), zap.String("broker", ae.Reason))
	}
	return nil
}

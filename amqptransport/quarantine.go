package amqptransport

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"
)

// sweepTimeout bounds one quarantine sweep.
const sweepTimeout = 2 * time.Minute

// SweepReport tells what a quarantine sweep did.
type SweepReport struct {
	Inspected   int // messages fetched and looked at
	Republished int // unreadable-header messages republished with safe types
	Dropped     int // messages that could not be parsed at all, rejected without requeue
}

// QuarantineSweep looks for messages whose header tables amqp091-go cannot
// decode (py-amqp's 'L' integers) at the head of the given queues, and
// republishes each with headers it can read (see the package
// documentation). Consumers run it by themselves after their connection
// died on an unreadable frame; it is exported for tools and tests. Other
// messages are left in place.
func (b *Broker) QuarantineSweep(ctx context.Context, queues ...string) (SweepReport, error) {
	b.sweepMu.Lock()
	defer b.sweepMu.Unlock()
	limit := b.cfg.QuarantineScanLimit
	if limit <= 0 {
		return SweepReport{}, nil
	}
	log := b.log.Named("quarantine")
	rc, err := dialRaw(ctx, b.uri, b.cfg.ConnectionName+" (quarantine)", b.cfg.DialTimeout)
	if err != nil {
		return SweepReport{}, err
	}
	stop := context.AfterFunc(ctx, func() { _ = rc.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var rep SweepReport
	var errs []error
	for _, q := range queues {
		if err := b.sweepQueue(ctx, rc, q, limit, &rep, log); err != nil {
			errs = append(errs, fmt.Errorf("queue %q: %w", q, err))
			var ae *amqp.Error
			if !errors.As(err, &ae) || !ae.Recover {
				break // the raw connection is unusable
			}
		}
	}
	if err := rc.close(); err != nil && len(errs) == 0 {
		log.Debug("closing the sweep connection", zap.Error(err))
	}
	return rep, errors.Join(errs...)
}

func (b *Broker) sweepQueue(ctx context.Context, rc *rawConn, queue string, limit int, rep *SweepReport, log *zap.Logger) error {
	rc.deadline(sweepTimeout)
	for n := 0; n < limit; n++ {
		m, ok, err := rc.get(queue)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		rep.Inspected++
		if n == 0 && int(m.remaining)+1 < limit {
			limit = int(m.remaining) + 1
		}
		switch {
		case m.parseErr != nil:
			log.Error("dropping a message whose content header cannot be parsed",
				zap.String("queue", queue), zap.Int("body_size", len(m.raw.Body)), zap.Error(m.parseErr))
			if err := rc.reject(m.tag, false); err != nil {
				return err
			}
			rep.Dropped++
		case m.foreignTags != "":
			m.raw.Redelivered = false
			if err := b.Publish(ctx, "", queue, &m.raw); err != nil {
				return fmt.Errorf("republish quarantined message: %w", err)
			}
			if err := rc.ack(m.tag); err != nil {
				return err
			}
			rep.Republished++
			log.Warn("republished a message with header types amqp091-go cannot read",
				zap.String("queue", queue), zap.String("field_types", m.foreignTags),
				zap.Any("id", m.raw.Headers["id"]), zap.Any("task", m.raw.Headers["task"]))
		}
	}
	// Everything else goes back to the queue.
	rc.deadline(30 * time.Second)
	return rc.closeChannel()
}

// sweep is the consumer's automatic sweep after a frame syntax error.
func (b *Broker) sweep(ctx context.Context, queues []Queue, log *zap.Logger) {
	if b.cfg.QuarantineScanLimit < 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, sweepTimeout)
	defer cancel()
	names := make([]string, len(queues))
	for i, q := range queues {
		names[i] = q.Name
	}
	rep, err := b.QuarantineSweep(ctx, names...)
	if err != nil {
		log.Error("quarantine sweep failed", zap.Error(err),
			zap.Int("inspected", rep.Inspected), zap.Int("republished", rep.Republished))
		return
	}
	log.Warn("quarantine sweep done", zap.Int("inspected", rep.Inspected),
		zap.Int("republished", rep.Republished), zap.Int("dropped", rep.Dropped))
}

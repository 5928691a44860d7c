package amqptransport

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/gworker/gworker/amqptransport/internal/rawamqp"
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
	rc, err := rawamqp.Dial(ctx, b.main.endpoint().uri, b.cfg.ConnectionName+" (quarantine)", b.cfg.DialTimeout)
	if err != nil {
		return SweepReport{}, err
	}
	stop := context.AfterFunc(ctx, rc.Interrupt)
	defer stop()
	var rep SweepReport
	var errs []error
	for _, q := range queues {
		if err := b.sweepQueue(ctx, rc, q, limit, &rep, log); err != nil {
			var ae *amqp.Error
			if errors.As(err, &ae) && ae.Code == amqp.NotFound {
				// An auto-delete queue (a pidbox, a reply queue) went
				// with the connection that died: nothing to sweep.
				log.Debug("queue gone before the sweep", zap.String("queue", q))
				continue
			}
			errs = append(errs, fmt.Errorf("queue %q: %w", q, err))
			if ae == nil || !ae.Recover {
				break // the raw connection is unusable
			}
		}
	}
	if err := rc.Close(); err != nil && len(errs) == 0 {
		log.Debug("closing the sweep connection", zap.Error(err))
	}
	return rep, errors.Join(errs...)
}

func (b *Broker) sweepQueue(ctx context.Context, rc *rawamqp.Conn, queue string, limit int, rep *SweepReport, log *zap.Logger) error {
	rc.Deadline(sweepTimeout)
	for n := 0; n < limit; n++ {
		m, ok, err := rc.Get(queue)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		rep.Inspected++
		if n == 0 && int(m.Remaining)+1 < limit {
			limit = int(m.Remaining) + 1
		}
		switch {
		case m.ParseErr != nil:
			log.Error("dropping a message whose content header cannot be parsed",
				zap.String("queue", queue), zap.Int("body_size", len(m.Raw.Body)), zap.Error(m.ParseErr))
			if err := rc.Reject(m.Tag, false); err != nil {
				return err
			}
			rep.Dropped++
		case m.ForeignTags != "":
			// The copy keeps every property and header type; only the
			// types amqp091-go cannot read are rewritten.
			if err := rc.Republish("", queue, m); err != nil {
				return fmt.Errorf("republish quarantined message: %w", err)
			}
			if err := rc.Ack(m.Tag); err != nil {
				return err
			}
			rep.Republished++
			log.Warn("republished a message with header types amqp091-go cannot read",
				zap.String("queue", queue), zap.String("field_types", m.ForeignTags),
				zap.Any("id", m.Raw.Headers["id"]), zap.Any("task", m.Raw.Headers["task"]))
		}
	}
	// Everything else goes back to the queue.
	rc.Deadline(30 * time.Second)
	return rc.CloseChannel()
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

package amqptransport

import (
	"runtime"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Tag states kept by an acker.
const (
	tagAcked   = iota + 1 // acknowledged by the application, not yet sent
	tagSettled            // sent (a single ack, a reject): only fills the gap
)

// acker batches the acknowledgements of one channel (ConsumerConfig.BatchAcks).
//
// Delivery tags on a channel are consecutive from 1. The acker tracks the
// lowest tag not yet settled and which later ones are. An Ack records its
// tag; if no flush is running, the caller flushes, otherwise it returns at
// once and the running flush takes the tag on its next pass, so under load
// one write carries many acknowledgements. A flush sends one basic.ack
// with multiple=true for the settled prefix (up to the highest recorded
// ack in it), and single acks for acknowledged tags after a gap, so a
// message held unacknowledged (an ETA, a long task with acks_late) never
// delays the others. Rejects are written at once by the caller and then
// recorded as settled, so a later multiple ack never covers a message that
// was rejected, and never one still outstanding.
type acker struct {
	ch *amqp.Channel

	mu       sync.Mutex
	next     uint64           // lowest tag not known to be settled
	state    map[uint64]uint8 // tags >= next that are settled or acked
	pending  int              // tags in state tagAcked
	flushing bool
	idle     *sync.Cond // signalled when a flush ends
	err      error      // first write error, reported by the next Ack
}

func newAcker(ch *amqp.Channel) *acker {
	a := &acker{ch: ch, next: 1, state: map[uint64]uint8{}}
	a.idle = sync.NewCond(&a.mu)
	return a
}

// ack records tag as acknowledged and flushes unless a flush is running.
// It returns the error of a previous flush, if any: the channel is then
// broken and its unacknowledged messages will be requeued.
func (a *acker) ack(tag uint64) error {
	a.mu.Lock()
	if tag >= a.next {
		a.state[tag] = tagAcked
		a.pending++
	}
	if a.flushing {
		err := a.err
		a.mu.Unlock()
		return err
	}
	a.flushing = true
	// Let the goroutines that are about to ack do so first: on a busy
	// worker this turns a write per ack into one per several (about 3.6
	// acks per write at -c 16 draining tasks.add), and it costs a lone
	// Ack only a pass through the scheduler.
	a.mu.Unlock()
	runtime.Gosched()
	a.mu.Lock()
	a.flushLocked()
	err := a.err
	a.mu.Unlock()
	return err
}

// settled records a tag whose settlement the caller already sent (a
// reject): it only lets the prefix advance past it.
func (a *acker) settled(tag uint64) {
	a.mu.Lock()
	if tag >= a.next {
		a.state[tag] = tagSettled
	}
	a.mu.Unlock()
}

// flushLocked sends what is pending until nothing is; a.mu is held on
// entry and exit, released while writing.
func (a *acker) flushLocked() {
	for a.pending > 0 && a.err == nil {
		// The settled prefix, and the highest acknowledged tag in it.
		multi := uint64(0)
		for {
			st, ok := a.state[a.next]
			if !ok {
				break
			}
			if st == tagAcked {
				multi = a.next
				a.pending--
			}
			delete(a.state, a.next)
			a.next++
		}
		// Acknowledged tags after the gap go one by one.
		var singles []uint64
		if a.pending > 0 {
			for tag, st := range a.state {
				if st == tagAcked {
					singles = append(singles, tag)
					a.state[tag] = tagSettled
				}
			}
			a.pending = 0
		}
		a.mu.Unlock()
		var err error
		if multi > 0 {
			err = a.ch.Ack(multi, true)
		}
		for _, tag := range singles {
			if err != nil {
				break
			}
			err = a.ch.Ack(tag, false)
		}
		a.mu.Lock()
		if err != nil && a.err == nil {
			a.err = err
		}
	}
	a.flushing = false
	a.idle.Broadcast()
}

// drain waits for a running flush to end, so that every acknowledgement
// recorded so far is written before the channel is closed.
func (a *acker) drain() {
	a.mu.Lock()
	for a.flushing {
		a.idle.Wait()
	}
	a.mu.Unlock()
}

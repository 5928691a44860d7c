package amqptransport

import (
	"runtime"
	"slices"
	"sort"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// span is a run of consecutive settled delivery tags, lo..hi inclusive.
type span struct{ lo, hi uint64 }

// acker batches the acknowledgements of one channel (ConsumerConfig.BatchAcks).
//
// Delivery tags on a channel are consecutive from 1. The acker tracks the
// lowest tag not yet settled (next) and, as sorted spans, the settled tags
// after it; the spans are as many as the gaps, so memory is bounded by the
// messages outstanding, however long one of them is held. An Ack records
// its tag; if no flush is running, the caller flushes, otherwise the
// running flush takes the tag on its next pass and the caller waits for
// that pass's write only (not for the flush to run out of work, which
// under load would hold every caller until all of them had acked), so
// under load one write carries many acknowledgements and every Ack still
// returns the outcome of its own write. A flush sends one basic.ack
// with multiple=true for the settled prefix (up to the highest recorded ack
// in it), and single acks for acknowledged tags after a gap, so a message
// held unacknowledged (an ETA, a long task with acks_late) never delays the
// others. Rejects are written at once by the caller and then recorded as
// settled, so a later multiple ack never covers a message that was
// rejected, nor one still outstanding or not yet seen by the application
// (the prefix only grows over tags recorded as settled).
type acker struct {
	// write sends one basic.ack: the channel's Ack.
	write func(tag uint64, multiple bool) error

	mu       sync.Mutex
	next     uint64   // lowest tag not known to be settled
	spans    []span   // settled tags > next, sorted, disjoint, not adjacent
	acked    []uint64 // acknowledged tags not yet sent
	flushing bool
	// pass is closed once the write that carries the tags now in acked
	// has ended (or was skipped after an error); nil until an Ack that
	// joined the running flush needs it.
	pass chan struct{}
	idle *sync.Cond // signalled when a flush ends
	err  error      // first write error, reported by the next Ack
}

func newAcker(ch *amqp.Channel) *acker {
	a := &acker{write: ch.Ack, next: 1}
	a.idle = sync.NewCond(&a.mu)
	return a
}

// ack records tag as acknowledged and flushes it, or waits for the running
// flush to write it. It returns the error of the write (or of an earlier
// one): the channel is then broken and its unacknowledged messages will be
// requeued.
func (a *acker) ack(tag uint64) error {
	a.mu.Lock()
	if a.mark(tag) {
		a.acked = append(a.acked, tag)
	}
	if a.flushing {
		// The running flush writes this tag on its next pass: wait for
		// that write, so that nil means the ack was written (an early-ack
		// worker runs the task on nil). Only that write: waiting for the
		// flush to end would hold this caller while the flush writes the
		// acks of callers that came later, until every one of them waits.
		if a.pass == nil {
			a.pass = make(chan struct{})
		}
		done := a.pass
		a.mu.Unlock()
		<-done
		a.mu.Lock()
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
	a.mark(tag)
	a.mu.Unlock()
}

// mark adds tag to the settled tags; false if it already was.
func (a *acker) mark(tag uint64) bool {
	if tag < a.next {
		return false
	}
	sp := a.spans
	// The first span that ends at tag-1 or later.
	i := sort.Search(len(sp), func(i int) bool { return sp[i].hi+1 >= tag })
	switch {
	case i < len(sp) && sp[i].lo <= tag && tag <= sp[i].hi:
		return false
	case i < len(sp) && sp[i].hi+1 == tag:
		sp[i].hi = tag
		if i+1 < len(sp) && sp[i+1].lo == tag+1 {
			sp[i].hi = sp[i+1].hi
			a.spans = append(sp[:i+1], sp[i+2:]...)
		}
	case i < len(sp) && sp[i].lo == tag+1:
		sp[i].lo = tag
	default:
		a.spans = slices.Insert(sp, i, span{tag, tag})
	}
	return true
}

// flushLocked sends what is pending until nothing is; a.mu is held on
// entry and exit, released while writing.
func (a *acker) flushLocked() {
	for len(a.acked) > 0 && a.err == nil {
		// Advance over the settled prefix.
		for len(a.spans) > 0 && a.spans[0].lo == a.next {
			a.next = a.spans[0].hi + 1
			a.spans = a.spans[1:]
		}
		// One multiple ack for the acknowledged tags before next, single
		// ones for those after the gap.
		multi := uint64(0)
		var singles []uint64
		for _, tag := range a.acked {
			if tag < a.next {
				multi = max(multi, tag)
			} else {
				singles = append(singles, tag)
			}
		}
		a.acked = a.acked[:0]
		done := a.pass
		a.pass = nil
		a.mu.Unlock()
		var err error
		if multi > 0 {
			err = a.write(multi, true)
		}
		for _, tag := range singles {
			if err != nil {
				break
			}
			err = a.write(tag, false)
		}
		a.mu.Lock()
		if err != nil && a.err == nil {
			a.err = err
		}
		if done != nil {
			close(done)
		}
	}
	if a.pass != nil {
		// Tags left unwritten after an error: their callers get it.
		close(a.pass)
		a.pass = nil
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

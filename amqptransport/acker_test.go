package amqptransport

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// Acknowledgements in any order from many goroutines, with rejects among
// them and one message held back: every message is settled exactly as
// asked, the held one does not delay the others, and no multiple ack ever
// covers a message it should not (which would close the channel and
// redeliver).
func TestBatchAcksOutOfOrder(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 300
	c, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{q}, Prefetch: n, GlobalQoS: true, BatchAcks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f.publishN(ctx, q.Name, n)
	ds := make([]*Delivery, 0, n)
	for len(ds) < n {
		ds = append(ds, recv(t, c, 10*time.Second))
	}
	held := ds[3] // a low tag: everything after it is past a gap
	rest := append(append([]*Delivery(nil), ds[:3]...), ds[4:]...)
	rand.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < len(rest); i += 16 {
				d := rest[i]
				var err error
				if headerInt(t, d, "n")%10 == 0 {
					err = d.Reject(false)
				} else {
					err = d.Ack()
				}
				if err != nil {
					t.Errorf("settle %d: %v", d.DeliveryTag, err)
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, 20*time.Second, "only the held message unacknowledged", func() bool {
		r, u := f.counts(q.Name)
		return r == 0 && u == 1
	})
	if err := held.Ack(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "queue drained", func() bool {
		r, u := f.counts(q.Name)
		return r == 0 && u == 0
	})
	select {
	case d := <-c.Deliveries():
		t.Fatalf("unexpected redelivery of tag %d (channel closed by a bad ack?)", d.(*Delivery).DeliveryTag)
	case <-time.After(200 * time.Millisecond):
	}
	if held.Stale() {
		t.Fatal("the channel closed")
	}
}

// Close writes every acknowledgement recorded before it: none of the
// acknowledged messages comes back.
func TestBatchAcksCloseWritesAll(t *testing.T) {
	f := newFixture(t)
	q := f.queue()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 500
	c, err := f.b.NewConsumer(ctx, ConsumerConfig{Queues: []Queue{q}, Prefetch: n, GlobalQoS: true, BatchAcks: true})
	if err != nil {
		t.Fatal(err)
	}
	f.publishN(ctx, q.Name, n)
	ds := make([]*Delivery, 0, n)
	for len(ds) < n {
		ds = append(ds, recv(t, c, 10*time.Second))
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 8 {
				if err := ds[i].Ack(); err != nil {
					t.Errorf("ack: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "nothing requeued", func() bool {
		r, u := f.counts(q.Name)
		return r == 0 && u == 0
	})
	if err := ds[0].Ack(); err == nil {
		t.Error("ack after Close succeeded")
	}
}

// The acker's memory stays bounded by the gaps: a message held for long
// while thousands after it are settled leaves one span, not thousands of
// entries.
func TestAckerSpans(t *testing.T) {
	a := newAcker(nil)
	for tag := uint64(3); tag <= 10000; tag++ {
		if !a.mark(tag) {
			t.Fatalf("tag %d already marked", tag)
		}
	}
	if len(a.spans) != 1 || a.spans[0] != (span{3, 10000}) {
		t.Fatalf("spans %v", a.spans)
	}
	if a.mark(5) {
		t.Error("duplicate mark accepted")
	}
	// Settle 1: the prefix can advance to 2, which is still held.
	a.mark(1)
	for len(a.spans) > 0 && a.spans[0].lo == a.next {
		a.next = a.spans[0].hi + 1
		a.spans = a.spans[1:]
	}
	if a.next != 2 || len(a.spans) != 1 {
		t.Fatalf("next %d spans %v", a.next, a.spans)
	}
	if a.mark(1) {
		t.Error("a tag below next was marked")
	}

	// Any order ends in one span without gaps.
	b := newAcker(nil)
	tags := make([]uint64, 2000)
	for i := range tags {
		tags[i] = uint64(i + 1)
	}
	rand.Shuffle(len(tags), func(i, j int) { tags[i], tags[j] = tags[j], tags[i] })
	for i, tag := range tags {
		b.mark(tag)
		for j := 1; j < len(b.spans); j++ {
			if b.spans[j-1].hi+1 >= b.spans[j].lo {
				t.Fatalf("after %d marks: spans overlap or touch: %v", i+1, b.spans[j-1:j+1])
			}
		}
	}
	if len(b.spans) != 1 || b.spans[0] != (span{1, 2000}) {
		t.Fatalf("spans %v", b.spans)
	}
}

// An Ack that joins a flush already running returns only once its own tag
// was written, with that write's error: a caller told nil must be able to
// trust the ack went out (an early-ack worker runs the task on nil, and a
// task whose ack was lost runs twice).
func TestBatchAckReportsItsOwnWrite(t *testing.T) {
	f := newFixture(t)
	ch, err := f.adm.Channel()
	if err != nil {
		t.Fatal(err)
	}
	ch.Close() // every write fails
	a := newAcker(ch)
	a.mu.Lock()
	a.flushing = true // another caller's flush is running
	a.mu.Unlock()
	res := make(chan error, 1)
	go func() { res <- a.ack(1) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a.mu.Lock()
		n := len(a.acked)
		a.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the ack was not recorded")
		}
		time.Sleep(time.Millisecond)
	}
	// The running flush takes the tag on its next pass, and fails.
	a.mu.Lock()
	a.flushLocked()
	a.mu.Unlock()
	select {
	case err := <-res:
		if err == nil {
			t.Fatal("Ack returned nil for a write that failed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Ack did not return")
	}
}

// An Ack that joined a running flush returns once the write carrying its
// tag is done, even while the flush goes on writing the acks of callers
// that came later: waiting for the whole flush to end held every caller
// until all of them had acked, which serialized a busy worker's pool on
// its acknowledgements.
func TestBatchAckWaitsOnlyForItsOwnWrite(t *testing.T) {
	a := &acker{next: 1}
	a.idle = sync.NewCond(&a.mu)
	writing := make(chan uint64, 8)
	release := map[uint64]chan struct{}{1: make(chan struct{}), 3: make(chan struct{})}
	var cAcked chan error
	a.write = func(tag uint64, multiple bool) error {
		writing <- tag
		if tag == 2 {
			// C acks while A's write is under way: it joins the next pass.
			cAcked = make(chan error, 1)
			go func() { cAcked <- a.ack(3) }()
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				a.mu.Lock()
				n := len(a.acked)
				a.mu.Unlock()
				if n == 1 {
					break
				}
			}
		}
		if r, ok := release[tag]; ok {
			<-r
		}
		return nil
	}
	fDone := make(chan error, 1)
	go func() { fDone <- a.ack(1) }() // F flushes; its write blocks
	if tag := <-writing; tag != 1 {
		t.Fatalf("first write carries tag %d, want 1", tag)
	}
	aDone := make(chan error, 1)
	go func() { aDone <- a.ack(2) }() // A joins the running flush
	waitAcked(t, a, 1)
	close(release[1])
	if tag := <-writing; tag != 2 {
		t.Fatalf("second write carries tag %d, want 2", tag)
	}
	if tag := <-writing; tag != 3 {
		t.Fatalf("third write carries tag %d, want 3", tag)
	}
	// The flush is now blocked writing C's tag: A's write is done.
	select {
	case err := <-aDone:
		if err != nil {
			t.Fatalf("A's ack: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an Ack whose write was done waited for the rest of the flush")
	}
	close(release[3])
	for name, c := range map[string]chan error{"F": fDone, "C": cAcked} {
		select {
		case err := <-c:
			if err != nil {
				t.Fatalf("%s's ack: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s's ack did not return", name)
		}
	}
}

// waitAcked waits until n acknowledgements are recorded and not yet sent.
func waitAcked(t *testing.T, a *acker, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a.mu.Lock()
		got := len(a.acked)
		a.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d acks recorded, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

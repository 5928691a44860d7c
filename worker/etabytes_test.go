package worker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

// Held ETA messages raise the prefetch window only while their bodies fit
// MaxHeldETABytes: beyond it they wait inside the normal window, so a flood
// of large countdown messages cannot pull unbounded bytes into memory.
func TestHeldETACappedByBytes(t *testing.T) {
	reg := worker.NewRegistry()
	if err := reg.Register("tasks.big", func(s string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	e := newFakeEnv(t, reg, func(c *worker.Config) {
		c.Concurrency = 1
		c.PrefetchMultiplier = 1
		c.MaxHeldETABytes = 25_000
	})
	eta := time.Now().Add(time.Hour)
	const n = 6
	size := 0
	for i := 0; i < n; i++ {
		raw, err := protocol.Encode(&protocol.Message{ID: "big-" + string(rune('a'+i)), Task: "tasks.big",
			Args: []any{strings.Repeat("x", 10_000)}, Kwargs: map[string]any{}, ETA: &eta}, protocol.EncodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		size = len(raw.Body)
		e.broker.deliver(raw, nil)
	}
	deadline := time.Now().Add(30 * time.Second)
	for e.worker.Stats().Received < n {
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d", e.worker.Stats().Received, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.broker.c.mu.Lock()
	windows := append([]int(nil), e.broker.c.prefetch...)
	e.broker.c.mu.Unlock()
	maxWindow := 1
	for _, w := range windows {
		maxWindow = max(maxWindow, w)
	}
	// 1 (the normal window) + as many messages as fit 25,000 bytes.
	if want := 1 + 25_000/size; maxWindow != want {
		t.Errorf("prefetch windows %v: max %d, want %d (bodies of %d bytes)", windows, maxWindow, want, size)
	}
}

// The byte cap counts bodies after decompression: compressed bodies of a
// few hundred bytes that inflate to 10,000 each raise the window as their
// inflated size, not as their wire size.
func TestHeldETABytesCountDecompressedBodies(t *testing.T) {
	reg := worker.NewRegistry()
	if err := reg.Register("tasks.big", func(s string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	e := newFakeEnv(t, reg, func(c *worker.Config) {
		c.Concurrency = 1
		c.PrefetchMultiplier = 1
		c.MaxHeldETABytes = 25_000
	})
	eta := time.Now().Add(time.Hour)
	const n = 6
	wire, inflated := 0, 0
	for i := 0; i < n; i++ {
		m := &protocol.Message{ID: "zbig-" + string(rune('a'+i)), Task: "tasks.big",
			Args: []any{strings.Repeat("x", 10_000)}, Kwargs: map[string]any{}, ETA: &eta}
		plain, err := protocol.Encode(m, protocol.EncodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := protocol.Encode(m, protocol.EncodeOptions{Compression: "zlib"})
		if err != nil {
			t.Fatal(err)
		}
		wire, inflated = len(raw.Body), len(plain.Body)
		e.broker.deliver(raw, nil)
	}
	if wire*n > 25_000 {
		t.Fatalf("compressed bodies of %d bytes: the test needs them to fit the cap together", wire)
	}
	deadline := time.Now().Add(30 * time.Second)
	for e.worker.Stats().Received < n {
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d", e.worker.Stats().Received, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.broker.c.mu.Lock()
	windows := append([]int(nil), e.broker.c.prefetch...)
	e.broker.c.mu.Unlock()
	maxWindow := 1
	for _, w := range windows {
		maxWindow = max(maxWindow, w)
	}
	if want := 1 + 25_000/inflated; maxWindow != want {
		t.Errorf("prefetch windows %v: max %d, want %d (bodies of %d bytes, %d compressed)", windows, maxWindow, want, inflated, wire)
	}
}

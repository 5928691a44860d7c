package worker_test

import (
	"context"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gworker/gworker/result"
	"github.com/gworker/gworker/worker"
)

// countingBackend is a fakeBackend that counts redeliveries, as the Redis
// backend does.
type countingBackend struct {
	*fakeBackend
	mu     sync.Mutex
	counts map[string]int64
}

func (b *countingBackend) CountRedelivery(_ context.Context, key string) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.counts[key]++
	return b.counts[key], nil
}

// "task redelivered: its previous run did not finish" is a warning only
// when an earlier run is known to have started: a redelivered copy counted
// before, or STARTED in the backend. A message that was only prefetched
// when its connection closed gets a debug line.
func TestRedeliveredWarningOnlyWhenARunStarted(t *testing.T) {
	const warning = "task redelivered: its previous run did not finish"
	for _, c := range []struct {
		name    string
		counted int64        // redelivered copies counted before
		stored  result.State // in the backend
		warn    bool
	}{
		{"only prefetched", 0, "", false},
		{"started (track_started)", 0, result.Started, true},
		{"an earlier copy started", 1, "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			reg := worker.NewRegistry()
			var rc runCounter
			rc.register(t, reg)
			b := &countingBackend{fakeBackend: newFakeBackend(), counts: map[string]int64{"copy.0": c.counted}}
			if c.stored != "" {
				b.stored["copy"] = []*result.Meta{{TaskID: "copy", Status: c.stored}}
			}
			e := newFakeEnv(t, reg, func(cfg *worker.Config) { cfg.AcksLate = true; cfg.Backend = b })
			e.broker.deliver(redelivered(t, "copy", 0), nil)
			e.broker.waitSettled(t, 1)
			if n := rc.count("copy"); n != 1 {
				t.Fatalf("%d runs, want 1", n)
			}
			warned := e.logs.FilterMessage(warning).FilterLevelExact(zapcore.WarnLevel).Len()
			debug := e.logs.FilterField(zap.String("id", "copy")).FilterLevelExact(zapcore.DebugLevel).Len()
			if (warned == 1) != c.warn || warned > 1 {
				t.Errorf("%d warnings, want warn=%v", warned, c.warn)
			}
			if !c.warn && debug == 0 {
				t.Error("no debug line for the redelivered copy")
			}
		})
	}
}

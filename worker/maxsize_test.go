package worker_test

import (
	"reflect"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gworker/gworker/protocol"
	"github.com/gworker/gworker/worker"
)

// A compressed body that inflates past MaxBodySize (a zlib bomb) is
// rejected without requeue, with an ERROR line that gives the reason; the
// worker goes on with the next message.
func TestInflatedBodyOverMaxBodySizeIsRejected(t *testing.T) {
	reg := worker.NewRegistry()
	if err := reg.Register("tasks.echo", func(s string) (int, error) { return len(s), nil }); err != nil {
		t.Fatal(err)
	}
	e := newFakeEnv(t, reg, func(c *worker.Config) { c.MaxBodySize = 64 << 10 })
	bomb, err := protocol.Encode(&protocol.Message{ID: "bomb", Task: "tasks.echo",
		Args: []any{strings.Repeat("0", 4<<20)}, Kwargs: map[string]any{}}, protocol.EncodeOptions{Compression: "zlib"})
	if err != nil {
		t.Fatal(err)
	}
	if len(bomb.Body) > 64<<10 {
		t.Fatalf("compressed body of %d bytes: it must fit the cap on the wire", len(bomb.Body))
	}
	ok, err := protocol.Encode(&protocol.Message{ID: "fine", Task: "tasks.echo",
		Args: []any{"abc"}, Kwargs: map[string]any{}}, protocol.EncodeOptions{Compression: "zlib"})
	if err != nil {
		t.Fatal(err)
	}
	db := e.broker.deliver(bomb, nil)
	df := e.broker.deliver(ok, nil)
	e.broker.waitSettled(t, 2)
	if got := e.broker.c.outcome(db); !reflect.DeepEqual(got, []string{"reject"}) {
		t.Errorf("bomb settled %v, want [reject]", got)
	}
	if got := e.broker.c.outcome(df); !reflect.DeepEqual(got, []string{"ack"}) {
		t.Errorf("next message settled %v, want [ack]", got)
	}
	lines := e.logs.FilterLevelExact(zapcore.ErrorLevel).FilterField(zap.String("reason", "inflated-too-large")).Len()
	if lines != 1 {
		t.Errorf("%d ERROR lines with reason inflated-too-large, want 1", lines)
	}
	if s := e.worker.Stats(); s.Invalid != 1 {
		t.Errorf("stats %+v: want 1 invalid", s)
	}
}

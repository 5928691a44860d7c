package control_test

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gworker/gworker/control"
	"github.com/gworker/gworker/gworkertest"
	"github.com/gworker/gworker/worker"
)

// busyMailbox is a transport whose queues all have a consumer already.
type busyMailbox struct{ *memTransport }

func (busyMailbox) QueueConsumers(context.Context, string) (int, error) { return 1, nil }

// A node whose mailbox another node of the same name consumes says so,
// with kombu's warning, and starts all the same.
func TestMailboxInUseIsWarned(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	env := gworkertest.NewEnv(t, gworkertest.Config{Registry: worker.NewRegistry()})
	if err := env.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	node, err := control.New(control.Config{Transport: busyMailbox{newMemTransport()}, Worker: env.Worker(),
		Hostname: "go@twice", Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer node.Stop()
	found := false
	for _, e := range logs.All() {
		found = found || strings.HasPrefix(e.Message, "A node named go@twice is already using this process mailbox!")
	}
	if !found {
		t.Errorf("no warning; logged %v", logs.All())
	}
}

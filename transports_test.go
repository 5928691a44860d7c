package gworker_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gworker/gworker"
	"github.com/gworker/gworker/transport"
)

// The URLs' schemes are checked against the App's registries: the default
// transports and backends, or the ones given with options.
func TestURLSchemesFollowTheRegistries(t *testing.T) {
	for _, u := range []string{"amqp://guest:guest@localhost:5672//", "pyamqp://h", "AMQPS://h", "redis://localhost:6379/0",
		"rediss://:pw@h:6380/1", "sentinel://h1:26379;sentinel://h2:26379"} {
		if _, err := gworker.NewApp(gworker.Config{BrokerURL: u}); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	_, err := gworker.NewApp(gworker.Config{BrokerURL: "sqs://user:topsecret@h"})
	if !errors.Is(err, gworker.ErrInvalidConfig) || !strings.Contains(err.Error(), gworker.ErrUnsupportedBroker.Error()) || strings.Contains(err.Error(), "topsecret") {
		t.Errorf("sqs://: %v", err)
	}
	for _, u := range []string{"redis://h/0", "rediss://h/0", "rpc://", "disabled://"} {
		if _, err := gworker.NewApp(gworker.Config{ResultBackend: u}); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	if _, err := gworker.NewApp(gworker.Config{ResultBackend: "mongodb://h"}); !errors.Is(err, gworker.ErrInvalidConfig) || !strings.Contains(err.Error(), gworker.ErrUnsupportedBackend.Error()) {
		t.Errorf("mongodb://: %v", err)
	}
	// A transport of one's own: its scheme is accepted, and only it.
	reg := transport.NewRegistry()
	reg.Register(func(context.Context, string, transport.Options) (transport.Broker, error) {
		return nil, errors.New("not dialled in this test")
	}, "sqs")
	if _, err := gworker.NewApp(gworker.Config{BrokerURL: "sqs://h"}, gworker.WithTransports(reg)); err != nil {
		t.Errorf("sqs:// with its transport registered: %v", err)
	}
	if _, err := gworker.NewApp(gworker.Config{BrokerURL: "amqp://h"}, gworker.WithTransports(reg)); err == nil {
		t.Error("amqp:// accepted by an App whose registry has only sqs")
	}
}

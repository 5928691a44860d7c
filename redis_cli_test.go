package gworker

import (
	"errors"
	"strings"
	"testing"
)

func TestBrokerTransportOptionFlag(t *testing.T) {
	cfg, _, _ := parse(t, "-b", "sentinel://h1:26379;sentinel://h2:26379", "--broker-transport-option", "master_name=mymaster",
		"worker", "--broker-transport-option", "visibility_timeout=43200", "--broker-transport-option", "sep=:")
	o := cfg.BrokerTransportOptions
	if o["master_name"] != "mymaster" || o["visibility_timeout"] != "43200" || o["sep"] != ":" || len(o) != 3 {
		t.Errorf("transport options: %v", o)
	}
	for _, u := range []string{cfg.BrokerURL, "redis://localhost:6379/0", "rediss://:pw@h:6380/1"} {
		if _, err := NewApp(Config{BrokerURL: u}); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	if _, err := NewApp(Config{BrokerURL: "sqs://"}); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), ErrUnsupportedBroker.Error()) {
		t.Errorf("sqs://: %v", err)
	}
}

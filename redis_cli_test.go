package gworker

import (
	"errors"
	"testing"
)

func TestBrokerTransportOptionFlag(t *testing.T) {
	cfg, _, _ := parse(t, "-b", "sentinel://h1:26379;sentinel://h2:26379", "--broker-transport-option", "master_name=mymaster",
		"worker", "--broker-transport-option", "visibility_timeout=43200", "--broker-transport-option", "sep=:")
	o := cfg.BrokerTransportOptions
	if o["master_name"] != "mymaster" || o["visibility_timeout"] != "43200" || o["sep"] != ":" || len(o) != 3 {
		t.Errorf("transport options: %v", o)
	}
	if err := checkBrokerURL(cfg.BrokerURL); err != nil {
		t.Errorf("sentinel URL refused: %v", err)
	}
	for _, u := range []string{"redis://localhost:6379/0", "rediss://:pw@h:6380/1"} {
		if err := checkBrokerURL(u); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	if err := checkBrokerURL("sqs://"); !errors.Is(err, ErrUnsupportedBroker) {
		t.Errorf("sqs://: %v", err)
	}
}

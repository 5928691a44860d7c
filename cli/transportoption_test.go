package cli

import "testing"

func TestBrokerTransportOptionFlag(t *testing.T) {
	cfg, _, _ := parse(t, "-b", "sentinel://h1:26379;sentinel://h2:26379", "--broker-transport-option", "master_name=mymaster",
		"worker", "--broker-transport-option", "visibility_timeout=43200", "--broker-transport-option", "sep=:")
	o := cfg.BrokerTransportOptions
	if o["master_name"] != "mymaster" || o["visibility_timeout"] != "43200" || o["sep"] != ":" || len(o) != 3 {
		t.Errorf("transport options: %v", o)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("sentinel URL refused: %v", err)
	}
}

package redistransport

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestConfigTransportOptions(t *testing.T) {
	c, err := Config{TransportOptions: map[string]string{
		"visibility_timeout":    "43200",
		"queue_order_strategy":  "priority",
		"priority_steps":        "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]",
		"sep":                   ":",
		"global_keyprefix":      "app:",
		"socket_timeout":        "2.5",
		"unacked_restore_limit": "5",
		"fanout_prefix":         "true",
	}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.VisibilityTimeout != 12*time.Hour || c.QueueOrderStrategy != Priority || c.Sep != ":" ||
		c.GlobalKeyPrefix != "app:" || c.SocketTimeout != 2500*time.Millisecond || c.UnackedRestoreLimit != 5 ||
		len(c.PrioritySteps) != 10 {
		t.Fatalf("options not applied: %+v", c)
	}
	// Typed fields win over the map.
	c, err = Config{VisibilityTimeout: time.Minute, TransportOptions: map[string]string{"visibility_timeout": "10"}}.withDefaults()
	if err != nil || c.VisibilityTimeout != time.Minute {
		t.Fatalf("typed field overridden: %v %v", c.VisibilityTimeout, err)
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.VisibilityTimeout != DefaultVisibilityTimeout || c.Sep != "\x06\x16" || !slices.Equal(c.PrioritySteps, []int{0, 3, 6, 9}) ||
		c.UnackedKey != "unacked" || c.UnackedIndexKey != "unacked_index" || c.UnackedMutexKey != "unacked_mutex" ||
		c.UnackedMutexExpire != 5*time.Minute || c.QueueOrderStrategy != RoundRobin {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestConfigInvalid(t *testing.T) {
	for _, cfg := range []Config{
		{TransportOptions: map[string]string{"visibility_timeout": "soon"}},
		{TransportOptions: map[string]string{"queue_order_strategy": "random"}},
		{TransportOptions: map[string]string{"priority_steps": "9,3"}},
		{URL: "amqp://localhost"},
		{URL: "sentinel://localhost:26379"},
		{URL: "redis://localhost/notadb"},
	} {
		c, err := cfg.withDefaults()
		if err == nil {
			_, _, err = c.newClient()
		}
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: got %v, want ErrInvalidConfig", cfg, err)
		}
	}
}

func TestConfigURLs(t *testing.T) {
	for _, u := range []string{
		"redis://", "redis://localhost:6379/0", "redis://:secret@localhost/3", "redis://localhost:6379//",
		"rediss://localhost:6380/0?ssl_cert_reqs=none",
	} {
		c, _ := Config{URL: u}.withDefaults()
		cl, _, err := c.newClient()
		if err != nil {
			t.Errorf("%s: %v", u, err)
			continue
		}
		_ = cl.Close()
	}
	c, _ := Config{URL: "sentinel://:pw@h1:26379/2;sentinel://h2", MasterName: "mymaster"}.withDefaults()
	cl, db, err := c.newClient()
	if err != nil || db != 2 {
		t.Fatal(db, err)
	}
	_ = cl.Close()
	if got := RedactURL("sentinel://:pw@h1:26379;sentinel://u:x@h2"); got != "sentinel://:**@h1:26379;sentinel://u:**@h2" {
		t.Errorf("RedactURL: %s", got)
	}
}

func TestStep(t *testing.T) {
	b := &Broker{cfg: Config{PrioritySteps: DefaultPrioritySteps, Sep: DefaultSep}}
	for p, want := range map[int]int{-1: 0, 0: 0, 2: 0, 3: 3, 5: 3, 6: 6, 8: 6, 9: 9, 255: 9} {
		if got := b.Step(p); got != want {
			t.Errorf("Step(%d) = %d, want %d", p, got, want)
		}
	}
	if k := b.QueueKey("celery", 9); k != "celery\x06\x169" {
		t.Errorf("QueueKey: %q", k)
	}
	if k := b.QueueKey("celery", 0); k != "celery" {
		t.Errorf("QueueKey: %q", k)
	}
}

func TestConfigErrorsHidePasswords(t *testing.T) {
	for _, u := range []string{"redis://:s3cret@localhost/notadb", "redis://u:s3cret@local host/0", "kafka://u:s3cret@h"} {
		c, _ := Config{URL: u}.withDefaults()
		_, _, err := c.newClient()
		if err == nil {
			t.Fatalf("%s: no error", u)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("password in %q", err)
		}
	}
}

package amqptransport

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"amqp://guest:guest@localhost:5672//":    "amqp://guest:**@localhost:5672//",
		"amqp://user:p@ss:word@host/vhost":       "amqp://user:**@host/vhost",
		"amqp://user@host//":                     "amqp://user@host//",
		"amqp://host:5672//":                     "amqp://host:5672//",
		"amqps://u:secret@h:5671/v?heartbeat=10": "amqps://u:**@h:5671/v?heartbeat=10",
		"not a url":                              "not a url",
		"pyamqp://guest:guest@localhost//":       "pyamqp://guest:**@localhost//",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseURLCelerySpellings(t *testing.T) {
	for in, vhost := range map[string]string{
		"amqp://guest:guest@localhost:5672//": "/",
		"amqp://guest:guest@localhost:5672/":  "/",
		"amqp://guest:guest@localhost:5672":   "/",
		"pyamqp://guest@localhost//":          "/",
		"amqp://guest@localhost/proto":        "proto",
		"amqp://guest@localhost/%2Fx":         "/x",
	} {
		uri, _, err := parseURL(in)
		if err != nil {
			t.Errorf("parseURL(%q): %v", in, err)
			continue
		}
		if uri.Vhost != vhost {
			t.Errorf("parseURL(%q) vhost = %q, want %q", in, uri.Vhost, vhost)
		}
	}
	if _, _, err := parseURL("redis://localhost:6379/0"); err == nil {
		t.Error("parseURL accepted a redis URL")
	}
}

func TestBackoffCappedWithJitter(t *testing.T) {
	i := 0
	rnds := []float64{0, 1, 0.5}
	b := backoff{min: 100 * time.Millisecond, max: time.Second, rnd: func() float64 { i++; return rnds[i%3] }}
	var last time.Duration
	for n := 0; n < 20; n++ {
		last = b.next()
		if last > time.Second || last < 50*time.Millisecond {
			t.Fatalf("delay %v outside [min/2, max]", last)
		}
	}
	if b.cur != time.Second {
		t.Fatalf("backoff not capped at max: %v", b.cur)
	}
	b.reset()
	if d := b.next(); d > 100*time.Millisecond {
		t.Fatalf("after reset: %v", d)
	}
}

// A broker URL that does not parse must not put its password in the error
// (net/url quotes the whole URL in its errors).
func TestParseURLErrorHidesPassword(t *testing.T) {
	const pw = "s3cretPW"
	for _, raw := range []string{
		"amqp://u:" + pw + "@host/%zz",
		"amqp://u:" + pw + "@[::1",
		"pyamqp://u:" + pw + "@host:port//",
	} {
		_, err := Dial(context.Background(), Config{URL: raw})
		if !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("%q: %v, want ErrInvalidConfig", raw, err)
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("%q: the error leaks the password: %v", raw, err)
		}
	}
}

func TestConfigValidateTypes(t *testing.T) {
	for _, c := range []Config{
		{DefaultQueueType: "stream"},
		{DefaultExchangeType: "headers"},
		{DefaultExchangeType: "Topic"},
		{DelayedDeliveryQueueType: "stream"},
	} {
		if err := c.validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: validate() = %v, want ErrInvalidConfig", c, err)
		}
	}
	for _, c := range []Config{
		{},
		{DefaultQueueType: QueueTypeQuorum, DefaultExchangeType: "topic", DelayedDeliveryQueueType: QueueTypeClassic},
		{DefaultExchangeType: "fanout", DelayedDeliveryQueueType: QueueTypeQuorum},
	} {
		if err := c.validate(); err != nil {
			t.Errorf("%+v: validate() = %v", c, err)
		}
	}
	d := Config{}.withDefaults()
	if d.DefaultExchangeType != "direct" || d.DelayedDeliveryQueueType != QueueTypeQuorum {
		t.Errorf("defaults: exchange type %q, delayed delivery queue type %q", d.DefaultExchangeType, d.DelayedDeliveryQueueType)
	}
}

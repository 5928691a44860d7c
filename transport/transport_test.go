package transport_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/gworker/gworker/transport"
)

type fakeBroker struct {
	transport.Broker // only Close is used
	url              string
}

func TestRegistryOpensByScheme(t *testing.T) {
	r := transport.NewRegistry()
	var got transport.Options
	r.Register(func(_ context.Context, url string, o transport.Options) (transport.Broker, error) {
		got = o
		return fakeBroker{url: url}, nil
	}, "mem", "MEMS")
	b, err := r.Open(context.Background(), "MEM://x/1", transport.Options{ConnectionName: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if b.(fakeBroker).url != "MEM://x/1" || got.ConnectionName != "n" {
		t.Errorf("opened %v with %+v", b, got)
	}
	if !r.Supports("mems://h") || r.Supports("amqp://h") {
		t.Error("Supports disagrees with the registrations")
	}
	if s := r.Schemes(); !reflect.DeepEqual(s, []string{"mem", "mems"}) {
		t.Errorf("schemes %v", s)
	}
}

func TestRegistryRefusesUnknownScheme(t *testing.T) {
	r := transport.NewRegistry()
	for _, u := range []string{"sqs://q", "no-scheme", ""} {
		if _, err := r.Open(context.Background(), u, transport.Options{}); !errors.Is(err, transport.ErrUnsupportedScheme) {
			t.Errorf("%q: %v", u, err)
		}
	}
}

func TestScheme(t *testing.T) {
	for in, want := range map[string]string{
		"amqp://guest@h//":               "amqp",
		"Sentinel://a:1;sentinel://b:2":  "sentinel",
		"redis+socket:///tmp/redis.sock": "redis+socket",
		"localhost:5672":                 "",
		"db+postgresql://u@h/db":         "db+postgresql",
	} {
		if got := transport.Scheme(in); got != want {
			t.Errorf("Scheme(%q) = %q, want %q", in, got, want)
		}
	}
}

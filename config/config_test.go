package config

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestExpandHostname(t *testing.T) {
	host, _ := os.Hostname()
	short, _, _ := strings.Cut(host, ".")
	if got := ExpandHostname("go@%h"); got != "go@"+host {
		t.Errorf("%%h: %q", got)
	}
	if got := ExpandHostname("w1@%n"); got != "w1@"+short {
		t.Errorf("%%n: %q", got)
	}
	if got := ExpandHostname("100%%@%n"); got != "100%@"+short {
		t.Errorf("%%%%: %q", got)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	for name, cfg := range map[string]Config{
		"queue type":         {DefaultQueueType: "mirrored"},
		"soft over hard":     {TimeLimit: time.Second, SoftTimeLimit: time.Minute},
		"pickle":             {Accept: []string{"json", "pickle"}},
		"serializer":         {Serializer: "yaml"},
		"no queue left":      {Queues: []string{"a"}, ExcludeQueues: []string{"a"}},
		"default excluded":   {ExcludeQueues: []string{DefaultQueue}},
		"log level":          {LogLevel: "LOUD"},
		"negative limits":    {TimeLimit: -time.Second},
		"negative heartbeat": {HeartbeatInterval: -time.Second},
		"negative soft stop": {SoftShutdownTimeout: -time.Second},
		"negative workers":   {Concurrency: -1},
		"negative msg size":  {MaxMessageSize: -1},
		"negative horizon":   {ETAHorizon: -time.Minute},
	} {
		for _, c := range []Config{cfg, cfg.WithDefaults()} {
			err := c.Validate()
			var ce *Error
			if !errors.As(err, &ce) || !errors.Is(err, ErrInvalid) || len(ce.Problems) != 1 {
				t.Errorf("%s: Validate(%+v) = %v, want an *Error with one problem", name, c, err)
			}
		}
	}
	// URL schemes are the App's to check, against its registries.
	err := Config{BrokerURL: "kafka://h", Serializer: "yaml", DefaultQueueType: "mirrored"}.Validate()
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != 2 {
		t.Errorf("two problems: %v", err)
	}
	// The level of a Config that brings its own logger is not read.
	if err := (Config{Logger: zap.NewNop(), LogLevel: "LOUD"}).Validate(); err != nil {
		t.Errorf("LogLevel with a Logger: %v", err)
	}
	for _, ok := range []Config{{}, Config{}.WithDefaults(), {DefaultQueueType: QueueTypeQuorum, Accept: []string{"msgpack", "application/json"}}} {
		if err := ok.Validate(); err != nil {
			t.Errorf("Validate(%+v): %v", ok, err)
		}
	}
}

func TestWithDefaults(t *testing.T) {
	c := Config{}.WithDefaults()
	if c.DefaultQueue != DefaultQueue || !slices.Equal(c.Queues, []string{DefaultQueue}) ||
		c.PrefetchMultiplier != DefaultPrefetchMultiplier || c.ResultExpires != DefaultResultExpires ||
		c.Concurrency <= 0 || c.Hostname != DefaultHostname || !slices.Equal(c.Accept, DefaultAccept()) ||
		c.Serializer != DefaultSerializer || c.HeartbeatInterval != DefaultHeartbeatInterval || c.LogLevel != DefaultLogLevel {
		t.Errorf("defaults: %+v", c)
	}
	if c.BrokerURL != "" || c.ResultBackend != "" {
		t.Errorf("URLs are resolved at connection, not defaulted: %+v", c)
	}
	set := Config{Queues: []string{"go"}, Concurrency: 3, PrefetchMultiplier: -1, ResultExpires: -1}.WithDefaults()
	if !slices.Equal(set.Queues, []string{"go"}) || set.Concurrency != 3 || set.PrefetchMultiplier != -1 || set.ResultExpires != -1 {
		t.Errorf("set fields changed: %+v", set)
	}
}

func TestConsumedQueues(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want []string
	}{
		{Config{}, []string{DefaultQueue}},
		{Config{Queues: []string{"a", "b", "a", "", "c"}, ExcludeQueues: []string{"c"}}, []string{"a", "b"}},
		{Config{Queues: []string{"a"}, ExcludeQueues: []string{"a"}}, nil},
	} {
		if got := tc.cfg.ConsumedQueues(); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.cfg, got, tc.want)
		}
	}
}

func TestResolvedURLs(t *testing.T) {
	t.Setenv(EnvBrokerURL, "")
	t.Setenv(EnvResultBackend, "")
	if got := (Config{}).ResolvedBrokerURL(); got != DefaultBrokerURL {
		t.Errorf("no broker anywhere: %s", got)
	}
	if got := (Config{}).ResolvedResultBackend(); got != "" {
		t.Errorf("no backend anywhere: %s", got)
	}
	t.Setenv(EnvBrokerURL, "redis://env:6379/0")
	t.Setenv(EnvResultBackend, "redis://env:6379/1")
	if got := (Config{}).ResolvedBrokerURL(); got != "redis://env:6379/0" {
		t.Errorf("broker from the environment: %s", got)
	}
	if got := (Config{}).ResolvedResultBackend(); got != "redis://env:6379/1" {
		t.Errorf("backend from the environment: %s", got)
	}
	c := Config{BrokerURL: "amqp://cfg//", ResultBackend: "rpc://"}
	if c.ResolvedBrokerURL() != "amqp://cfg//" || c.ResolvedResultBackend() != "rpc://" {
		t.Errorf("Config loses to the environment: %s %s", c.ResolvedBrokerURL(), c.ResolvedResultBackend())
	}
	if got := (Config{ResultBackend: "disabled://"}).ResolvedResultBackend(); got != "" {
		t.Errorf("disabled://: %q", got)
	}
}

func TestAcceptContentTypes(t *testing.T) {
	got, err := AcceptContentTypes([]string{" JSON", "application/x-msgpack", ""})
	if err != nil || !slices.Equal(got, []string{"application/json", "application/x-msgpack"}) {
		t.Errorf("got %v, %v", got, err)
	}
	for _, bad := range []string{"pickle", "yaml", "application/x-python-serialize"} {
		if _, err := AcceptContentTypes([]string{bad}); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestParseLogLevel(t *testing.T) {
	for in, want := range map[string]zapcore.Level{"debug": zapcore.DebugLevel, "": zapcore.InfoLevel, "WARN": zapcore.WarnLevel,
		"warning": zapcore.WarnLevel, "ERROR": zapcore.ErrorLevel, "fatal": zapcore.DPanicLevel, "CRITICAL": zapcore.DPanicLevel} {
		if got, err := ParseLogLevel(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	if _, err := ParseLogLevel("LOUD"); err == nil {
		t.Error("LOUD accepted")
	}
}

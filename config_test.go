package gworker

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"redis://:secret@localhost:6379/0":                    "redis://:**@localhost:6379/0",
		"amqp://user:s3cr3t@rabbit:5672/vhost":                "amqp://user:**@rabbit:5672/vhost",
		"redis://localhost:6379/0":                            "redis://localhost:6379/0",
		"redis://localhost:6379/0?password=secret":            "redis://localhost:6379/0?password=**",
		"amqp://u:secret@h1//;amqp://u:secret@h2//":           "amqp://u:**@h1//;amqp://u:**@h2//",
		"amqp://u:secret@host/%zz":                            "amqp://u:**@host/%zz",
		"redis://:secret@[::1":                                "redis://:**@[::1",
		"sentinel://:secret@h:26379;sentinel://:secret@h2:26": "sentinel://:**@h:26379;sentinel://:**@h2:26",
	} {
		if got := RedactURL(in); got != want || strings.Contains(got, "secret") {
			t.Errorf("RedactURL(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	for name, cfg := range map[string]Config{
		"broker scheme":   {BrokerURL: "kafka://h"},
		"backend scheme":  {ResultBackend: "mongodb://h"},
		"soft over hard":  {TimeLimit: time.Second, SoftTimeLimit: time.Minute},
		"pickle":          {Accept: []string{"json", "pickle"}},
		"serializer":      {Serializer: "yaml"},
		"no queue left":   {Queues: []string{"a"}, ExcludeQueues: []string{"a"}},
		"bad rate":        {RateLimits: map[string]string{"tasks.add": "fast"}},
		"log level":       {LogLevel: "LOUD"},
		"negative limits": {TimeLimit: -time.Second},
	} {
		_, err := NewApp(cfg)
		var ce *ConfigError
		if !errors.As(err, &ce) || !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: NewApp(%+v) = %v, want a *ConfigError", name, cfg, err)
		}
	}
	a, err := NewApp(Config{})
	if err != nil {
		t.Fatal(err)
	}
	c := a.Config()
	if c.DefaultQueue != DefaultQueue || len(c.Queues) != 1 || c.Queues[0] != DefaultQueue ||
		c.PrefetchMultiplier != DefaultPrefetchMultiplier || c.ResultExpires != DefaultResultExpires || c.Concurrency <= 0 {
		t.Errorf("defaults: %+v", c)
	}
	defer func() {
		if recover() == nil {
			t.Error("New did not panic on an invalid Config")
		}
	}()
	New(Config{BrokerURL: "kafka://h"})
}

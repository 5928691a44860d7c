package gworker

import (
	"sort"

	"github.com/gworker/gworker/protocol"
)

// celeryConf is what `celery inspect conf` shows of a node: its effective
// settings under Celery's names, with the passwords of URLs masked, so
// that operators compare gworker and Celery nodes key by key.
func celeryConf(cfg Config, brokerURL, backendURL string, queues []string) protocol.Dict {
	seconds := func(d interface{ Seconds() float64 }) any {
		if s := d.Seconds(); s != 0 {
			return s
		}
		return nil
	}
	var backend any
	if backendURL != "" {
		backend = RedactURL(backendURL)
	}
	rates := protocol.Dict{}
	names := make([]string, 0, len(cfg.RateLimits))
	for name := range cfg.RateLimits {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		rates = append(rates, protocol.Item{Key: name, Value: protocol.Dict{{Key: "rate_limit", Value: cfg.RateLimits[name]}}})
	}
	options := protocol.Dict{}
	keys := make([]string, 0, len(cfg.BrokerTransportOptions))
	for k := range cfg.BrokerTransportOptions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := cfg.BrokerTransportOptions[k]
		if k == "password" || k == "sentinel_password" {
			v = "********"
		}
		options = append(options, protocol.Item{Key: k, Value: v})
	}
	accept := make([]any, len(cfg.Accept))
	for i, a := range cfg.Accept {
		accept[i] = a
	}
	qs := make([]any, len(queues))
	for i, q := range queues {
		qs[i] = q
	}
	return protocol.Dict{
		{Key: "broker_url", Value: RedactURL(brokerURL)},
		{Key: "broker_transport_options", Value: options},
		{Key: "broker_heartbeat", Value: seconds(cfg.BrokerHeartbeat)},
		{Key: "result_backend", Value: backend},
		{Key: "result_expires", Value: seconds(cfg.ResultExpires)},
		{Key: "result_extended", Value: cfg.ResultExtended},
		{Key: "accept_content", Value: accept},
		{Key: "task_serializer", Value: cfg.Serializer},
		{Key: "task_default_queue", Value: cfg.DefaultQueue},
		{Key: "task_default_queue_type", Value: cfg.DefaultQueueType},
		{Key: "task_acks_late", Value: cfg.AcksLate},
		{Key: "task_track_started", Value: cfg.TrackStarted},
		{Key: "task_time_limit", Value: seconds(cfg.TimeLimit)},
		{Key: "task_soft_time_limit", Value: seconds(cfg.SoftTimeLimit)},
		{Key: "task_annotations", Value: rates},
		{Key: "worker_concurrency", Value: int64(cfg.Concurrency)},
		{Key: "worker_prefetch_multiplier", Value: int64(cfg.PrefetchMultiplier)},
		{Key: "worker_send_task_events", Value: cfg.TaskEvents},
		{Key: "worker_soft_shutdown_timeout", Value: cfg.SoftShutdownTimeout.Seconds()},
		{Key: "worker_enable_soft_shutdown_on_idle", Value: cfg.EnableSoftShutdownOnIdle},
		{Key: "worker_state_db", Value: nullable(cfg.StateDB)},
		{Key: "worker_hostname", Value: ExpandHostname(cfg.Hostname)},
		{Key: "task_queues", Value: qs},
		// Settings every Celery node reports (Celery's own integration
		// suite reads them); gworker's values are fixed: it works in UTC,
		// sets up no Python logging and imports no modules.
		{Key: "enable_utc", Value: true},
		{Key: "timezone", Value: "UTC"},
		{Key: "worker_hijack_root_logger", Value: false},
		{Key: "worker_log_color", Value: false},
		{Key: "deprecated_settings", Value: []any{}},
		{Key: "include", Value: []any{}},
	}
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

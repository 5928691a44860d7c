package tracing

import (
	"maps"

	"github.com/gworker/gworker/producer"
)

// nestedHeaders is the key under which Sentry and dd-trace nest their
// headers in a Celery message's headers.
const nestedHeaders = "headers"

// headerCarrier reads the trace context of a received message's headers:
// a key at the top level (as opentelemetry-instrumentation-celery writes
// it), else the same key in headers["headers"].
type headerCarrier map[string]any

func (c headerCarrier) Get(key string) string {
	if s, ok := c[key].(string); ok {
		return s
	}
	if nested, ok := c[nestedHeaders].(map[string]any); ok {
		if s, ok := nested[key].(string); ok {
			return s
		}
	}
	return ""
}

// Set is never called: a received message is only read.
func (c headerCarrier) Set(string, string) {}

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k, v := range c {
		if _, ok := v.(string); ok {
			keys = append(keys, k)
		}
	}
	return keys
}

// withHeaders returns msg with a copy of its headers that has fields set
// at the top level, and also in headers["headers"] where that map holds
// one of them already (a message received from Sentry's side and
// published again, as a retry is), so that no stale context stays there.
func withHeaders(msg producer.Message, fields map[string]string) producer.Message {
	m := *msg.Message
	m.Headers = make(map[string]any, len(msg.Headers)+len(fields))
	maps.Copy(m.Headers, msg.Headers)
	for k, v := range fields {
		m.Headers[k] = v
	}
	if nested, ok := m.Headers[nestedHeaders].(map[string]any); ok {
		var copied map[string]any
		for k, v := range fields {
			if _, has := nested[k]; has {
				if copied == nil {
					copied = maps.Clone(nested)
				}
				copied[k] = v
			}
		}
		if copied != nil {
			m.Headers[nestedHeaders] = copied
		}
	}
	msg.Message = &m
	return msg
}

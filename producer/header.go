package producer

import (
	"fmt"

	"github.com/gworker/gworker/protocol"
)

// standardHeaders are the keys Celery's protocol v2 writes itself.
var standardHeaders = map[string]bool{
	"lang": true, "task": true, "id": true, "shadow": true, "eta": true,
	"expires": true, "group": true, "group_index": true, "retries": true,
	"timelimit": true, "root_id": true, "parent_id": true, "argsrepr": true,
	"kwargsrepr": true, "origin": true, "ignore_result": true,
	"compression": true,
}

// customHeaders returns the non-standard entries of a delivered header
// table, or nil.
func customHeaders(h map[string]any) map[string]any {
	var out map[string]any
	for k, v := range h {
		if standardHeaders[k] {
			continue
		}
		if out == nil {
			out = make(map[string]any)
		}
		out[k] = v
	}
	return out
}

// sanitizeHeaders converts custom header values by protocol.HeaderValue,
// the rule every transport applies: int64, float64, string, bool, nil, []any
// and map[string]any, so nothing changes type between Go and Python.
func sanitizeHeaders(h map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(h))
	for k, v := range h {
		cv, err := protocol.HeaderValue(v)
		if err != nil {
			return nil, fmt.Errorf("%w: header %q: %w", ErrInvalidOption, k, err)
		}
		out[k] = cv
	}
	return out, nil
}

package producer

import (
	"fmt"
	"math"
	"reflect"
	"time"

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

// sanitizeHeaders converts custom header values to the types an AMQP table
// carries without loss between Go and Python: int64, float64, string, bool,
// nil, []any and map[string]any. time.Time becomes an ISO 8601 string.
func sanitizeHeaders(h map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(h))
	for k, v := range h {
		cv, err := headerValue(v, 0)
		if err != nil {
			return nil, fmt.Errorf("%w: header %q: %w", ErrInvalidOption, k, err)
		}
		out[k] = cv
	}
	return out, nil
}

const maxHeaderDepth = 32

func headerValue(v any, depth int) (any, error) {
	if depth > maxHeaderDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxHeaderDepth)
	}
	switch x := v.(type) {
	case nil, bool, string, int64, float64:
		return x, nil
	case int:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case uint8:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint:
		if uint64(x) > math.MaxInt64 {
			return nil, fmt.Errorf("integer %d does not fit in int64", x)
		}
		return int64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return nil, fmt.Errorf("integer %d does not fit in int64", x)
		}
		return int64(x), nil
	case float32:
		return float64(x), nil
	case time.Time:
		return protocol.FormatTime(x), nil
	case []byte:
		return nil, fmt.Errorf("[]byte is not allowed in headers (use a string)")
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			ce, err := headerValue(e, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = ce
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			ce, err := headerValue(e, depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = ce
		}
		return out, nil
	case protocol.Dict:
		return headerValue(x.Map(), depth)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		out := make([]any, rv.Len())
		for i := range out {
			ce, err := headerValue(rv.Index(i).Interface(), depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = ce
		}
		return out, nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return nil, fmt.Errorf("map key type %s is not string", rv.Type().Key())
		}
		out := make(map[string]any, rv.Len())
		it := rv.MapRange()
		for it.Next() {
			ce, err := headerValue(it.Value().Interface(), depth+1)
			if err != nil {
				return nil, err
			}
			out[it.Key().String()] = ce
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported header value type %T", v)
}

package protocol

import (
	"math/big"
	"reflect"
	"time"
	"unicode/utf8"
)

// HeaderValue converts a Go value into a message header value, the one
// rule every transport and the producer apply to custom headers. The result
// is made only of nil, bool, string, int64, float64, []any and
// map[string]any, the types an AMQP table or a kombu JSON envelope carries
// to Python unchanged:
//
//   - every value first follows FromGo (structs by their json tags, floats
//     stay floats, typed slices and maps, pointers, marshalers);
//   - integers outside the int64 range are refused (a header table cannot
//     carry them to Python);
//   - []byte becomes a string and must be valid UTF-8 (py-amqp decodes
//     header strings as UTF-8);
//   - time.Time becomes FormatTime's ISO 8601 string, as Celery's eta;
//   - a Dict becomes a map; maps whose keys are not strings are refused.
//
// Errors are *EncodeError, wrapping ErrUnsupportedValue.
func HeaderValue(v any) (any, error) {
	return headerValue(v, 0)
}

func headerValue(v any, depth int) (any, error) {
	if depth > MaxJSONDepth {
		return nil, unsupported("nesting deeper than %d", MaxJSONDepth)
	}
	switch x := v.(type) {
	case nil, string, int64, float64, bool:
		return x, nil
	case []byte:
		if !utf8.Valid(x) {
			return nil, unsupported("bytes that are not valid UTF-8 cannot be a header value")
		}
		return string(x), nil
	case time.Time:
		return FormatTime(x), nil
	case *big.Int:
		if x == nil {
			return nil, nil
		}
		if !x.IsInt64() {
			return nil, unsupported("integer %s does not fit int64", x)
		}
		return x.Int64(), nil
	case []any:
		out := make([]any, len(x))
		for i, it := range x {
			c, err := headerValue(it, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, it := range x {
			c, err := headerValue(it, depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case Dict:
		out := make(map[string]any, len(x))
		for _, it := range x {
			c, err := headerValue(it.Value, depth+1)
			if err != nil {
				return nil, err
			}
			out[it.Key] = c
		}
		return out, nil
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Map && rv.Type().Key().Kind() != reflect.String {
		return nil, unsupported("map key type %s (header tables have string keys)", rv.Type().Key())
	}
	c, err := fromGo(v, depth)
	if err != nil {
		return nil, err
	}
	return headerValue(c, depth)
}

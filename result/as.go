package result

import (
	"fmt"
	"reflect"

	"github.com/gworker/gworker/protocol"
)

// As converts a decoded result value (Python's types kept: int64,
// *big.Int, float64, string, []any, map[string]any, ...) to the Go type T
// by protocol.ToGo, the rule task arguments are bound with: an int takes 3
// or 3.0 but not 2.5 and must be in range, a float takes an int, []any
// becomes []int item by item, a dict fills a struct by its json tags, an
// ISO 8601 string fills a time.Time. A value that does not fit gives an
// error wrapping ErrConvert (and protocol.ErrConvert).
func As[T any](v any) (T, error) {
	if t, ok := v.(T); ok {
		return t, nil
	}
	var zero T
	typ := reflect.TypeFor[T]()
	rv, err := protocol.ToGo(v, typ)
	if err != nil {
		return zero, fmt.Errorf("%w to %s: %w", ErrConvert, typ, err)
	}
	out, _ := rv.Interface().(T) // a nil interface stays the zero T
	return out, nil
}

package result

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"reflect"
)

// As converts a decoded result value (Python's types kept: int64,
// *big.Int, float64, string, []any, map[string]any, ...) to the Go type T.
//
// Numbers convert between Go's integer and float kinds when the value fits
// exactly (an int64 into int8 must be in range; a float into an int must
// be integral). Other types (slices, maps, structs) go through a JSON round
// trip, so []any becomes []int and a dict fills a struct by its json tags.
// A value that does not fit gives an error wrapping ErrConvert.
func As[T any](v any) (T, error) {
	var zero T
	if t, ok := v.(T); ok {
		return t, nil
	}
	var out T
	rv := reflect.ValueOf(&out).Elem()
	if err := convertScalar(v, rv); err == nil {
		return out, nil
	} else if err != errNotScalar {
		return zero, err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return zero, fmt.Errorf("%w: %s to %s: %w", ErrConvert, pyType(v), rv.Type(), err)
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return zero, fmt.Errorf("%w: %s to %s: %w", ErrConvert, pyType(v), rv.Type(), err)
	}
	return out, nil
}

var errNotScalar = fmt.Errorf("not a scalar conversion")

// convertScalar handles number, string and bool targets directly.
func convertScalar(v any, dst reflect.Value) error {
	mismatch := func() error {
		return fmt.Errorf("%w: %s to %s", ErrConvert, pyType(v), dst.Type())
	}
	switch dst.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		switch x := v.(type) {
		case int64:
			i = x
		case *big.Int:
			if x == nil || !x.IsInt64() {
				return fmt.Errorf("%w: %s overflows %s", ErrConvert, x, dst.Type())
			}
			i = x.Int64()
		case float64:
			if x != math.Trunc(x) || x < math.MinInt64 || x >= math.MaxInt64 {
				return mismatch()
			}
			i = int64(x)
		default:
			return mismatch()
		}
		if dst.OverflowInt(i) {
			return fmt.Errorf("%w: %d overflows %s", ErrConvert, i, dst.Type())
		}
		dst.SetInt(i)
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		var u uint64
		switch x := v.(type) {
		case int64:
			if x < 0 {
				return fmt.Errorf("%w: %d is negative, %s is unsigned", ErrConvert, x, dst.Type())
			}
			u = uint64(x)
		case *big.Int:
			if x == nil || !x.IsUint64() {
				return fmt.Errorf("%w: %s overflows %s", ErrConvert, x, dst.Type())
			}
			u = x.Uint64()
		case float64:
			if x != math.Trunc(x) || x < 0 || x >= math.MaxUint64 {
				return mismatch()
			}
			u = uint64(x)
		default:
			return mismatch()
		}
		if dst.OverflowUint(u) {
			return fmt.Errorf("%w: %d overflows %s", ErrConvert, u, dst.Type())
		}
		dst.SetUint(u)
		return nil
	case reflect.Float32, reflect.Float64:
		var f float64
		switch x := v.(type) {
		case float64:
			f = x
		case int64:
			f = float64(x)
		case *big.Int:
			if x == nil {
				return mismatch()
			}
			f, _ = new(big.Float).SetInt(x).Float64()
		default:
			return mismatch()
		}
		dst.SetFloat(f)
		return nil
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			return mismatch()
		}
		dst.SetString(s)
		return nil
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			return mismatch()
		}
		dst.SetBool(b)
		return nil
	}
	return errNotScalar
}
